"""Package boundaries: train reads stores only (no extraction code, audio libraries or audio files), and no
package has an import circle."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(r'''
    import builtins, importlib, importlib.abc, io, json, os, pkgutil, sys

    BLOCKED = ("extract", "transformers", "pyAudioAnalysis", "soundfile", "soxr")
    AUDIO = (".wav", ".flac", ".mp3")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"boundary: {name} may not be imported by train")
            return None

    sys.meta_path.insert(0, Blocker())

    def check(file):
        if isinstance(file, (str, bytes, os.PathLike)):
            p = os.fsdecode(os.fspath(file)).lower()
            if p.endswith(AUDIO):
                raise OSError(f"boundary: train opened an audio file {p}")

    def guard(fn):
        def wrapped(file, *a, **k):
            check(file)
            return fn(file, *a, **k)
        return wrapped

    builtins.open = guard(builtins.open)
    io.open = guard(io.open)
    import h5py

    class GuardedFile(h5py.File):
        def __init__(self, name, *a, **k):
            check(name)
            super().__init__(name, *a, **k)

    h5py.File = GuardedFile
    for probe in (lambda: open("x.wav"), lambda: h5py.File("x.flac", "r")):
        try:
            probe()
            raise SystemExit("guard inactive")
        except OSError:
            pass

    try:
        import soundfile  # noqa: F401
        raise SystemExit("import blocker inactive")
    except ImportError:
        pass

    import train
    for m in pkgutil.iter_modules(train.__path__):
        importlib.import_module(f"train.{m.name}")
    from train.cli import run
    store, out = sys.argv[1], sys.argv[2]
    rc = run(["cv", "--store", store, "--head", "mean", "--epochs", "2", "--seeds", "0,1", "--out", out])
    rc2 = run(["cv", "--store", store, "--head", "attention", "--k", "4", "--epochs", "1", "--out", out])
    print(json.dumps({"rc": [rc, rc2], "loaded": sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)}))
''')


def test_train_never_touches_extract_audio_libraries_or_audio_files(tmp_path, toy_store):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(toy_store), str(tmp_path / "runs")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": [0, 0], "loaded": []}
    assert len(list((tmp_path / "runs").iterdir())) == 2


def _imports(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (at module level or inside functions)."""
    graph = {}
    for path in (ROOT / package).glob("*.py"):
        src = path.read_text()
        deps = set(re.findall(r"^\s*from \.(\w+) import", src, re.M))
        deps |= set(re.findall(rf"^\s*from {package}\.(\w+) import", src, re.M))
        deps |= set(re.findall(rf"^\s*import {package}\.(\w+)", src, re.M))
        graph[path.stem] = deps - {path.stem}
    return graph


@pytest.mark.parametrize("package", ["ser_common", "data_manifests", "extract", "train"])
def test_no_module_imports_itself_through_others(package):
    graph = _imports(package)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            assert dep not in path, f"import circle in {package}: {' -> '.join(path[path.index(dep):] + [dep])}"
            if dep not in done:
                visit(dep, path + [dep])
        done.add(node)

    for module in sorted(graph):
        visit(module, [module])
    assert len(graph) > 5
