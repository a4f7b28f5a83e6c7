"""Text feature set ``bert[:model]``: WordPiece-token embeddings of the transcript, as in the paper.

Each transcript -> (tokens, float32 [n_tokens, hidden_size]): one row per WordPiece token of the text, taken
from the second-to-last hidden layer (``hidden_states[-2]``, i.e. the output of transformer layer
``num_hidden_layers - 1``) of a BERT-family model (default ``bert-base-uncased``: 768 dims; the offline
stand-in ``../shared/models/minilm-l6-v2``: 384 dims).

Special tokens: ``[CLS]`` and ``[SEP]`` (and padding) are dropped, so the rows are exactly the text's
WordPiece tokens (``"Eisschrank"`` -> ``e ##iss ##ch ##rank``), which is what the bimodal head aligns with
audio frames. An empty (or all-whitespace) transcript has no text tokens; it then keeps the single ``[CLS]``
row, so every utterance has at least one row. Transcripts longer than the model's maximum length (512
tokens with specials) are truncated with a warning (the trailing ``[SEP]`` is kept for the forward pass).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .feature_set import FeatureSet
from .hub import load_pretrained
from .naming import model_basename
from .registry import register
from .runtime import autocast, hidden_states
from .weights import weights_sha256

DEFAULT_MODEL = "bert-base-uncased"
MAX_LENGTH = 512


def bert_feature_name(name_or_path: str) -> str:
    """Store name: ``bert`` for the default model (hub id or a local folder named ``bert-base-uncased``),
    else ``bert-<basename>`` (``/m/minilm-l6-v2`` -> ``bert-minilm-l6-v2``, ``owner/name`` -> ``bert-owner-name``)."""
    base = model_basename(name_or_path)
    return "bert" if base == DEFAULT_MODEL else f"bert-{base}"


def _lowercase(tokenizer: Any) -> bool | None:
    """Whether the tokenizer lower-cases its input (``None`` when it cannot be told)."""
    flag = getattr(tokenizer, "do_lower_case", None)
    if flag is not None:
        return bool(flag)
    norm = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    if norm is None:
        return None
    text = repr(norm)
    return True if "lowercase=True" in text or "Lowercase" in text else False


class BertFeatureSet(FeatureSet):
    """WordPiece tokens of a transcript -> float32 [n_tokens, hidden_size] from ``hidden_states[-2]``.

    Build with :meth:`from_pretrained` (hub id or local folder), or directly from an already-built model and
    tokenizer (tests: a random ``BertModel(BertConfig(...))``).

    Args:
        model: a transformers encoder (``BertModel`` or another BERT-family ``AutoModel``), eval mode is set.
        tokenizer: its WordPiece tokenizer (fast, adds ``[CLS]``/``[SEP]``).
        encoder: hub id or path as given (provenance), ``"random"`` for a random model.
        name: store name (default :func:`bert_feature_name` of ``encoder``).
        weights: sha256 of the weights (default: hashed from the model's folder; ``None`` for random).
        max_length: longest token sequence fed to the model, specials included (capped by the model's own).
        batch_size: transcripts per forward pass.
    """

    modality = "text"
    frame_rate_hz = None
    min_samples = 1

    def __init__(self, model: Any, tokenizer: Any, *, encoder: str = "random", name: str | None = None,
                 weights: str | None = None, max_length: int = MAX_LENGTH, batch_size: int = 64) -> None:
        cfg = model.config
        if getattr(cfg, "num_hidden_layers", 0) < 1:
            raise ValueError(f"{type(model).__name__} reports no hidden layers; need a BERT-family encoder")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoder = str(encoder)
        self.name = name or bert_feature_name(self.encoder)
        self.dims = int(cfg.hidden_size)
        self.layer = int(cfg.num_hidden_layers) - 1  # index into hidden_states (N + 1 entries): [-2]
        limits = [max_length, getattr(cfg, "max_position_embeddings", max_length)]
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 100_000:
            limits.append(tok_max)
        self.max_length = int(min(limits))
        self.batch_size = int(batch_size)
        self._weights = weights if weights is not None else weights_sha256(model)
        if tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no pad token")

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_MODEL, **kw: Any) -> "BertFeatureSet":
        """Load model + tokenizer from a local folder or a hub id (fails fast offline, see :mod:`extract.hub`).

        Custom code is never run (``trust_remote_code=False``): a folder with an ``auto_map`` is refused with
        :class:`extract.hub.RemoteCodeRefusedError` before anything is loaded.
        """
        import torch
        from transformers import AutoModel, AutoTokenizer

        tokenizer = load_pretrained(AutoTokenizer, name_or_path, spec_prefix="bert", trust_remote_code=False)
        model = load_pretrained(AutoModel, name_or_path, spec_prefix="bert", dtype=torch.float32,
                                trust_remote_code=False)
        return cls(model, tokenizer, encoder=str(name_or_path), weights=weights_sha256(name_or_path), **kw)

    # ---- FeatureSet ---------------------------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            "feature": self.name, "spec": self.spec or self.name, "modality": self.modality,
            "encoder": self.encoder, "encoder_class": type(self.model).__name__,
            "weights_sha256": self._weights, "layer": self.layer, "layer_desc": "hidden_states[-2]",
            "num_hidden_layers": int(self.model.config.num_hidden_layers),
            "tokenizer": getattr(tok, "name_or_path", "") or self.encoder,
            "tokenizer_class": type(tok).__name__, "lowercase": _lowercase(tok),
            "special_tokens": "dropped ([CLS] kept for an empty transcript)",
            "max_length": self.max_length, "dims": self.dims, "frame_rate_hz": None,
        }

    def _move_model(self, device: str) -> None:
        self.model.to(device)

    def encode_text(self, texts: list[str]) -> list[tuple[list[str], np.ndarray]]:
        """Each transcript -> (WordPiece tokens, float32 [n_tokens, dims]) from ``hidden_states[-2]``.

        Rows are the text's tokens in order, special tokens and padding excluded (an empty transcript: the
        ``[CLS]`` row alone). Batched with right padding and an attention mask; results do not depend on
        the batch.
        """
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of transcripts, not a single string")
        out: list[tuple[list[str], np.ndarray]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._encode_batch(list(texts[start:start + self.batch_size])))
        return out

    # ---- internals ----------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids (with specials) and special-token masks, truncated to :attr:`max_length`."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"transcript {i} is {type(t).__name__}, not str")
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=False, padding=False, verbose=False,
                             return_special_tokens_mask=True, return_attention_mask=False,
                             return_token_type_ids=False)
        ids_all, special_all = [], []
        L = self.max_length
        for i, (ids, special) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"])):
            ids, special = list(ids), list(special)
            if len(ids) > L:
                warnings.warn(f"{self.name}: transcript {i} ({texts[i][:40]!r}…) has {len(ids)} tokens; keeping the "
                              f"first {L} (the model's maximum length)", stacklevel=3)
                tail = special[-1] == 1  # keep the closing [SEP]
                ids = ids[:L - 1] + [ids[-1]] if tail else ids[:L]
                special = special[:L - 1] + [special[-1]] if tail else special[:L]
            ids_all.append(ids)
            special_all.append(special)
        return ids_all, special_all

    def _encode_batch(self, texts: list[str]) -> list[tuple[list[str], np.ndarray]]:
        import torch

        if not texts:
            return []
        ids_all, special_all = self._tokenize(texts)
        T = max(len(ids) for ids in ids_all)
        input_ids = torch.full((len(texts), T), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(texts), T), dtype=torch.long)
        for i, ids in enumerate(ids_all):
            input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, :len(ids)] = 1
        with torch.inference_mode(), autocast(self.device, self.compute_dtype):
            hs = hidden_states(self.model, [self.layer], input_ids=input_ids.to(self.device),
                               attention_mask=mask.to(self.device))[self.layer]
        hs = hs.float().cpu().numpy()
        out = []
        for i, (ids, special) in enumerate(zip(ids_all, special_all)):
            keep = [j for j, s in enumerate(special) if not s] or [0]
            tokens = self.tokenizer.convert_ids_to_tokens([ids[j] for j in keep])
            out.append((list(tokens), np.ascontiguousarray(hs[i, keep], dtype=np.float32)))
        return out


@register("bert", "token embeddings of the transcript from the second-to-last hidden layer of a BERT-family "
                  "model; argument: hub id or path (default bert-base-uncased)")
def build_bert(arg: str | None = None) -> BertFeatureSet:
    """``bert`` -> bert-base-uncased; ``bert:/path/to/model`` or ``bert:owner/name`` -> that model."""
    return BertFeatureSet.from_pretrained(arg or DEFAULT_MODEL)
