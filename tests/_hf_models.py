"""Tiny Hugging Face text models built in a test's tmp folder, and their own reference
outputs: shared by ``test_adapters_real.py`` (adapter venv) and ``test_encoder_layers.py``
(both venvs; transformers imports in the main one too)."""

from __future__ import annotations

import collections
import re

import numpy as np


def texts() -> tuple[list[str], list[str]]:
    """Real English sentences: the first lines of scikit-learn's public docstrings,
    labelled by their module (4 classes)."""
    import sklearn.cluster
    import sklearn.decomposition
    import sklearn.linear_model
    import sklearn.metrics

    out, labels = [], []
    for mod in (sklearn.cluster, sklearn.decomposition, sklearn.linear_model,
                sklearn.metrics):
        n = 0
        for name in sorted(getattr(mod, "__all__", [])):
            doc = (getattr(getattr(mod, name), "__doc__", None) or "").strip()
            line = doc.split("\n\n")[0].replace("\n", " ").strip()
            if len(line.split()) >= 4 and n < 30:
                out.append(line)
                labels.append(mod.__name__.split(".")[-1])
                n += 1
    return out, labels


def bert_folder(path, *, layers: int = 2):
    """A tiny BERT (hidden size 32, ``layers`` layers, random weights under seed 0)
    saved with ``save_pretrained`` beside a WordPiece vocabulary built from
    :func:`texts`; returns ``path``."""
    import torch
    import transformers as tr

    sentences, _ = texts()
    words = collections.Counter(w for t in sentences
                                for w in re.findall(r"[a-z]+", t.lower()))
    chars = sorted({c for t in sentences for c in t.lower() if not c.isspace()})
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
             + [f"##{c}" for c in chars if c.isalnum()]
             + [w for w, _ in words.most_common(300) if len(w) > 1])
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = tr.BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = tr.BertConfig(vocab_size=tok.vocab_size, hidden_size=32,
                        num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64)
    tr.BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def hidden_state_means(folder, sentences, layer: int) -> np.ndarray:
    """transformers' own ``hidden_states[layer]`` of each text alone (no padding),
    averaged over its tokens: an independent reference for the ``hf:`` adapter's
    masked mean over a padded batch."""
    import torch
    import transformers as tr

    tok = tr.AutoTokenizer.from_pretrained(folder)
    model = tr.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return np.stack([
            model(**tok(t, truncation=True, max_length=256, return_tensors="pt"),
                  output_hidden_states=True).hidden_states[layer][0].mean(0).numpy()
            for t in sentences])
