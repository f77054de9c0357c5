"""``hf:NAME[layer=k]``: one text model's layers as candidates (issue 23, item 4).

transformers imports in the main venv, so these run in both venvs; the timm layers are
checked in ``test_adapters_real.py`` (adapter venv). The reference is transformers' own
``hidden_states[k]`` of each text alone, averaged over its tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
from _hf_models import bert_folder, hidden_state_means, texts

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bert_folder(tmp_path_factory.mktemp("hf") / "bert", layers=3)


@pytest.mark.parametrize("layer", [0, 2, -1, -4])
def test_layer_is_that_hidden_state_masked_mean_pooled(bert, layer):
    from taskrel.encoders import load_encoder

    sentences = texts()[0][:10]
    enc = load_encoder(f"hf:{bert}", layer=layer, device="cpu")
    got = enc.encode(sentences)
    np.testing.assert_allclose(got, hidden_state_means(bert, sentences, layer),
                               rtol=1e-4, atol=1e-5)
    assert enc.cache_key()["layer"] == layer % 4  # -1 and 3 are one cache entry
    if layer == -1:  # the last hidden state: the default features
        np.testing.assert_allclose(got, load_encoder(f"hf:{bert}").encode(sentences),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", [4, -5, "2", 1.0, True])
def test_layer_out_of_range_names_the_valid_range(bert, layer):
    from taskrel.encoders import load_encoder
    from taskrel.exceptions import TaskrelInputError

    with pytest.raises(TaskrelInputError, match=r"`layer` must be an int in \[-4, 3\] "
                                                r"\(0 = the embeddings, 3 = the last"):
        load_encoder(f"hf:{bert}", layer=layer, device="cpu")


def test_layers_of_one_model_rank_as_candidates(bert, tmp_path):
    import taskrel
    from taskrel.data import from_arrays

    sentences, labels = texts()
    ref_rows = [i for i, lab in enumerate(labels) if lab in ("cluster", "decomposition")]
    tgt_rows = [i for i in range(len(sentences)) if i not in ref_rows]
    ref = from_arrays([sentences[i] for i in ref_rows], [labels[i] for i in ref_rows])
    tgt = from_arrays([sentences[i] for i in tgt_rows], [labels[i] for i in tgt_rows])
    specs = f"hf:{bert}[layer=0,label=embeddings],hf:{bert}[layer=2],hf:{bert}"
    r = taskrel.rank(tgt, specs, reference=ref, device="cpu", cache_dir=tmp_path,
                     estimators="knn_accuracy,sfda", progress=False)
    assert {row["encoder"] for row in r.rows} == {"embeddings", f"hf:{bert}[layer=2]",
                                                  f"hf:{bert}"}
    for row in r.rows:
        assert np.isfinite(row["values"]["knn_accuracy"]) and "image_size" not in row
