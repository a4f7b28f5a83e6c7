"""Round trip through a real Label Studio server: suggestions -> tasks -> labels by "a person" -> export -> manifest.

Run with the project's Python (``.venv/bin/python scripts/label_studio_roundtrip.py``, or
``make label-studio-roundtrip``). It

1. creates Label Studio's own virtual environment (default ``/tmp/ser-label-studio-venv``, reused when it
   already holds the pinned version) and pip-installs ``label-studio==LABEL_STUDIO_VERSION`` there, never into
   the project's environment (its pins conflict with ours);
2. writes a small pool of WAV files (file names with a space and a ``#``, to test URL quoting) into a
   temporary document root, its manifest (``ser-manifest folder``'s builder) and a toy suggestion list;
3. starts Label Studio on 127.0.0.1 (a free port) with local-files serving on that document root, a user
   and a legacy API token from its own command-line options, its version check, analytics and error reporting
   off;
4. creates a project with :func:`train.label_studio.label_config_xml`, a Local Files storage on the document
   root (so the audio URLs play), imports the task file of :func:`train.label_studio.write_label_studio_tasks`
   as a file upload, and checks that every task's audio URL serves the very bytes of its WAV file;
5. posts annotations through the REST API as a labeller would (some confirm the model's guess, some change it,
   one task skipped (cancelled), one left alone, one relabelled later by a second annotation);
6. exports the project as JSON through the API, runs ``ser-manifest label-studio`` on the export and checks
   that exactly the expected labels came back (the latest annotation for the relabelled one);
7. always stops the server (its whole process group), also on errors and Ctrl-C.

Every wait is bounded. ``--fixtures DIR`` copies the task file, the labelling config and the export there
(the test fixtures of tests/*/test_label_studio.py come from this). Exit status 0 when the round trip
checked out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_manifests.folder import build_folder
from ser_common.labels import FOUR_CLASSES
from ser_common.manifest import read_manifest, write_manifest
from train.label_studio import (AUDIO_NAME, CHOICES_NAME, label_config_path, write_label_config,
                                write_label_studio_tasks)

LABEL_STUDIO_VERSION = "1.23.2"
"""The pinned Label Studio release the round trip runs against."""
HOST = "127.0.0.1"
USER = "roundtrip@example.com"

# (file under the document root's pool/, model's guess, what the labeller does)
#   ("label", L): submit L; ("cancel",): skip the task; ("none",): leave it; ("relabel", A, B): A, later B
POOL: list[tuple[str, str, tuple]] = [
    ("spk1/spk1_a.wav", "happy", ("label", "happy")),        # confirms the model's guess
    ("spk1/spk1 take#2.wav", "neutral", ("label", "sad")),    # changes it; the name needs URL quoting
    ("spk2/spk2_a.wav", "angry", ("label", "angry")),
    ("spk2/spk2_b.wav", "sad", ("label", "neutral")),
    ("spk3/spk3_a.wav", "neutral", ("cancel",)),              # skipped in Label Studio: stays unlabelled
    ("spk3/spk3_b.wav", "happy", ("none",)),                  # not reached yet: stays unlabelled
    ("spk4/spk4_a.wav", "sad", ("relabel", "sad", "angry")),  # relabelled: the later annotation wins
    ("spk4/spk4_b.wav", "angry", ("label", "happy")),
]


def log(msg: str) -> None:
    print(f"[roundtrip] {msg}", flush=True)


def ensure_venv(venv: Path, version: str, timeout_s: float) -> Path:
    """Label Studio's executable in ``venv``, installing ``label-studio==version`` there when needed."""
    exe, pip = venv / "bin" / "label-studio", venv / "bin" / "pip"
    if exe.is_file():
        shown = subprocess.run([str(pip), "show", "label-studio"], capture_output=True, text=True, timeout=120)
        have = next((ln.split(":", 1)[1].strip() for ln in shown.stdout.splitlines() if ln.startswith("Version:")),
                    None)
        if have == version:
            log(f"reusing {venv} (label-studio {have})")
            return exe
        log(f"{venv} holds label-studio {have}, not {version}: installing {version}")
    else:
        log(f"installing label-studio=={version} into {venv} (several minutes)")
    if not (venv / "bin" / "python").exists():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], check=True,
                       timeout=300)
    subprocess.run([str(pip), "install", "-q", f"label-studio=={version}"], check=True, timeout=timeout_s)
    return exe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Api:
    """A minimal Label Studio REST client (stdlib only) for ``http://127.0.0.1:<port>``."""

    def __init__(self, port: int, token: str, timeout_s: float = 60.0) -> None:
        self.base = f"http://{HOST}:{port}"
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str = "application/json", auth: bool = True) -> tuple[int, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if auth:
            req.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        status, content = self.request(method, path, body, **kw)
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {content[:600].decode(errors='replace')}")
        return json.loads(content) if content else None

    def upload(self, path: str, file: Path) -> Any:
        """POST ``file`` as a multipart form upload (what the Import dialog sends)."""
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file.name}\"\r\n"
                "Content-Type: application/json\r\n\r\n").encode()
        raw = head + file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        return self.json("POST", path, raw=raw, content_type=f"multipart/form-data; boundary={boundary}")


def wait_until_up(api: Api, proc: subprocess.Popen, log_file: Path, timeout_s: float) -> str:
    """Poll ``/api/version`` until the server answers (bounded); return its version."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited with status {proc.returncode} while starting; its log "
                               f"({log_file}) ends:\n{log_file.read_text(errors='replace')[-3000:]}")
        try:
            status, content = api.request("GET", "/api/version", auth=False)
            if status == 200:
                return json.loads(content).get("release", "?")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(2)
    raise RuntimeError(f"Label Studio did not answer on {api.base} within {timeout_s:.0f} s; log: {log_file}")


def stop(proc: subprocess.Popen | None, grace_s: float = 20.0) -> None:
    """Terminate the server's whole process group, then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass
    log(f"server stopped (exit status {proc.returncode})")


def make_pool(root: Path, work: Path) -> tuple[Path, list[dict[str, Any]]]:
    """WAV files under ``root/pool``, their manifest, and toy suggestion rows (model guess from :data:`POOL`)."""
    pool = root / "pool"
    for i, (rel, _, _) in enumerate(POOL):
        path = pool / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(0.4 * 16_000)) / 16_000
        sf.write(str(path), (0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32), 16_000)
    records = build_folder(pool, corpus="roundtrip", speaker_from="folder")
    manifest = write_manifest(records, work / "pool.jsonl")
    by_audio = {Path(r.audio).relative_to(pool).as_posix(): r for r in records}
    rows = []
    for rank, (rel, guess, _) in enumerate(POOL, 1):
        rest = (1.0 - 0.55) / (len(FOUR_CLASSES) - 1)
        rows.append({"rank": rank, "utt_id": by_audio[rel].utt_id, "score": round(1.4 - 0.1 * rank, 3),
                     "pred": guess, **{f"p_{c}": (0.55 if c == guess else rest) for c in FOUR_CLASSES},
                     "audio": by_audio[rel].audio})
    return manifest, rows


def choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": CHOICES_NAME, "to_name": AUDIO_NAME, "type": "choices", "value": {"choices": [label]}}]


def run(args: argparse.Namespace) -> int:
    exe = ensure_venv(Path(args.venv), args.version, args.install_timeout)
    work = Path(tempfile.mkdtemp(prefix="ser-label-studio-roundtrip-"))
    docroot = work / "audio"
    log(f"work folder {work}")
    manifest, rows = make_pool(docroot, work)
    tasks_file = write_label_studio_tasks(rows, FOUR_CLASSES, work / "tasks.json", document_root=docroot,
                                          model_version="toy-model")
    config_file = write_label_config(FOUR_CLASSES, label_config_path(tasks_file))
    log(f"wrote {len(rows)} tasks to {tasks_file} and the labelling config {config_file}")

    port = args.port or free_port()
    ls_data = Path(args.ls_data) if args.ls_data else work / "ls-data"
    ls_data.mkdir(parents=True, exist_ok=True)
    credentials = ls_data / "roundtrip-credentials.json"   # the user exists once per database: reuse its token
    if not credentials.is_file():
        credentials.write_text(json.dumps({"token": uuid.uuid4().hex, "password": uuid.uuid4().hex}))
        credentials.chmod(0o600)
    secret = json.loads(credentials.read_text())
    token = secret["token"]
    env = {**os.environ,
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docroot),
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
           "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
           "LABEL_STUDIO_SENTRY_DSN": "", "LABEL_STUDIO_FRONTEND_SENTRY_DSN": ""}
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    env["PATH"] = f"{Path(args.venv) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    log_file = work / "label-studio.log"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", HOST, "--port", str(port),
           "--data-dir", str(ls_data), "--username", USER, "--password", secret["password"],
           "--user-token", token, "--enable-legacy-api-token", "--log-level", "WARNING"]
    proc = None
    try:
        with open(log_file, "wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=work)
        log(f"starting Label Studio on http://{HOST}:{port} (pid {proc.pid}, log {log_file})")
        api = Api(port, token, timeout_s=args.request_timeout)
        t0 = time.monotonic()
        release = wait_until_up(api, proc, log_file, args.start_timeout)
        log(f"Label Studio {release} answered after {time.monotonic() - t0:.0f} s")
        whoami = api.json("GET", "/api/current-user/whoami")
        log(f"authenticated as {whoami.get('email')} (legacy API token)")
        return roundtrip(api, args, work, docroot, manifest, tasks_file, config_file, release)
    finally:
        stop(proc)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def roundtrip(api: Api, args: argparse.Namespace, work: Path, docroot: Path, manifest: Path, tasks_file: Path,
              config_file: Path, release: str) -> int:
    project = api.json("POST", "/api/projects", {"title": "ser-toolkit round trip",
                                                 "label_config": config_file.read_text()})
    pid = project["id"]
    log(f"created project {pid} with the labelling config ({len(FOUR_CLASSES)} classes)")
    # a storage on a subfolder of the document root (Label Studio refuses the root itself) authorises serving
    storage = api.json("POST", "/api/storages/localfiles", {"project": pid, "title": "audio",
                                                             "path": str(docroot / "pool"), "use_blob_urls": False})
    log(f"added Local Files storage {storage['id']} on {docroot / 'pool'} (not synced: it only authorises serving)")
    imported = api.upload(f"/api/projects/{pid}/import", tasks_file)
    counts = {k: imported.get(k) for k in ("task_count", "prediction_count", "annotation_count") if k in imported}
    log(f"imported {tasks_file.name}: {json.dumps(counts)}")
    tasks = api.json("GET", f"/api/tasks?project={pid}&page_size=100")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    if len(tasks) != len(POOL):
        raise RuntimeError(f"the project holds {len(tasks)} task(s), expected {len(POOL)}")
    n_pred = sum(t.get("total_predictions", 0) for t in tasks)
    if n_pred != len(POOL):
        raise RuntimeError(f"{n_pred} prediction(s) imported, expected {len(POOL)} (one per task)")
    by_utt = {t["data"]["utt_id"]: t for t in tasks}

    records = {r.utt_id: r for r in read_manifest(manifest)}
    for uid, task in by_utt.items():
        status, content = api.request("GET", task["data"][AUDIO_NAME])
        want = Path(records[uid].audio).read_bytes()
        if status != 200 or content != want:
            raise RuntimeError(f"the audio URL {task['data'][AUDIO_NAME]} of {uid} answered HTTP {status} with "
                               f"{len(content)} bytes, expected the {len(want)} bytes of {records[uid].audio}")
    log(f"all {len(by_utt)} audio URLs serve their WAV files (local-files serving)")

    expected: dict[str, str] = {}
    audio_to_utt = {Path(r.audio).relative_to(docroot / "pool").as_posix(): r.utt_id for r in records.values()}
    for rel, _, action in POOL:
        uid = audio_to_utt[rel]
        tid = by_utt[uid]["id"]
        if action[0] == "label":
            api.json("POST", f"/api/tasks/{tid}/annotations", {"result": choice(action[1]), "lead_time": 3.2})
            expected[uid] = action[1]
        elif action[0] == "cancel":
            api.json("POST", f"/api/tasks/{tid}/annotations", {"result": [], "was_cancelled": True})
        elif action[0] == "relabel":
            api.json("POST", f"/api/tasks/{tid}/annotations", {"result": choice(action[1]), "lead_time": 2.0})
            time.sleep(1.1)  # the second annotation is later by the clock, as when a person comes back to it
            api.json("POST", f"/api/tasks/{tid}/annotations", {"result": choice(action[2]), "lead_time": 4.0})
            expected[uid] = action[2]
    log(f"posted annotations: {len(expected)} tasks labelled (1 of them relabelled by a later annotation), "
        "1 cancelled (skipped), 1 left alone")

    status, content = api.request("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true")
    if status != 200:
        raise RuntimeError(f"export -> HTTP {status}: {content[:600].decode(errors='replace')}")
    export = work / "export.json"
    export.write_bytes(content)
    log(f"exported the project as JSON ({len(json.loads(content))} tasks, {len(content)} bytes)")

    labelled = work / "labelled.jsonl"
    cli = [sys.executable, "-m", "data_manifests.cli", "label-studio", str(export), "--manifest", str(manifest),
           "-o", str(labelled)]
    log("$ ser-manifest label-studio export.json --manifest pool.jsonl -o labelled.jsonl")
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"ser-manifest label-studio failed with status {done.returncode}")
    got = {r.utt_id: r.label for r in read_manifest(labelled)}
    if got != expected:
        raise RuntimeError(f"labels differ: expected {expected}, got {got}")
    log(f"labels came back exactly: {len(got)} labelled ({', '.join(f'{u}={lab}' for u, lab in sorted(got.items()))})")

    if args.fixtures:
        fixtures = Path(args.fixtures)
        fixtures.mkdir(parents=True, exist_ok=True)
        shutil.copy(tasks_file, fixtures / "tasks.json")
        shutil.copy(config_file, fixtures / "label_config.xml")
        shutil.copy(export, fixtures / "export.json")
        shutil.copy(manifest, fixtures / "pool.jsonl")
        (fixtures / "expected_labels.json").write_text(json.dumps(
            {"label_studio": release, "labels": dict(sorted(expected.items()))}, indent=1) + "\n")
        log(f"copied the task file, labelling config, export and manifest to {fixtures}")
    log(f"ROUND TRIP OK with Label Studio {release}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", default="/tmp/ser-label-studio-venv", help="Label Studio's own virtual environment.")
    p.add_argument("--version", default=LABEL_STUDIO_VERSION, help="The label-studio release to install.")
    p.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
    p.add_argument("--ls-data", default=None,
                   help="Label Studio's data folder (its database). Default: a fresh one in the work folder; "
                        "reusing one skips the database migrations of a first start (minutes on 2 cores).")
    p.add_argument("--start-timeout", type=float, default=900, help="Seconds to wait for the server to answer.")
    p.add_argument("--request-timeout", type=float, default=120, help="Seconds per API request.")
    p.add_argument("--install-timeout", type=float, default=1800, help="Seconds for the pip install.")
    p.add_argument("--fixtures", default=None, help="Copy the task file, config and export into this folder.")
    p.add_argument("--keep", action="store_true", help="Keep the temporary work folder (audio, database, log).")
    args = p.parse_args()
    try:
        return run(args)
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
        print(f"[roundtrip] FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
