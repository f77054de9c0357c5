"""Per-encoder specs: inline ``NAME[key=value,...]`` and zoo files (TOML)."""

from __future__ import annotations

import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.features.encoders.specs import (
    EncoderSpec,
    load_zoo,
    parse_encoder_spec,
    split_encoder_list,
)


def test_commas_inside_brackets_belong_to_the_spec():
    got = split_encoder_list("effnet_lite0, timm:resnet50[weights=a.pth,image_size=224],"
                             "hf:./bert[layer=6]")
    assert got == ["effnet_lite0", "timm:resnet50[weights=a.pth,image_size=224]",
                   "hf:./bert[layer=6]"]


@pytest.mark.parametrize("bad", ["a[b=1", "a]b", "a[[b=1]]"])
def test_unbalanced_brackets_are_named(bad):
    with pytest.raises(TaskrelInputError, match="--encoders"):
        split_encoder_list(bad)


def test_values_are_typed_like_toml_scalars():
    s = parse_encoder_spec('timm:vit[weights=v.pth,image_size=224,scale=0.5,'
                           'pretrained=false,tag="007",label=my vit]')
    assert s == EncoderSpec("timm:vit", {"weights": "v.pth", "image_size": 224,
                                         "scale": 0.5, "pretrained": False, "tag": "007"},
                            "my vit")
    assert parse_encoder_spec("effnet_lite0").label == "effnet_lite0"
    # Without label= the row's name is the spec itself, so two checkpoints of one
    # architecture never share a row name.
    a = parse_encoder_spec("timm:resnet50[weights=a.pth]")
    b = parse_encoder_spec("timm:resnet50[weights=b.pth]")
    assert a.label != b.label and a.label == "timm:resnet50[weights=a.pth]"


@pytest.mark.parametrize("bad, what", [("x[=3]", "key=value"), ("x[a]", "key=value"),
                                       ("x[a=1,a=2]", "twice"), ("", "non-empty")])
def test_bad_specs_say_what_is_wrong(bad, what):
    with pytest.raises(TaskrelInputError, match=what):
        parse_encoder_spec(bad)


def test_zoo_file_resolves_weights_next_to_it(tmp_path):
    (tmp_path / "ckpt").mkdir()
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[encoder]]\nname = "timm:resnet50"\nlabel = "r50"\n'
                   'weights = "ckpt/r50.pth"\nimage_size = 224\n\n'
                   '[[encoder]]\nname = "effnet_lite0"\n')
    specs = load_zoo(zoo)
    assert [s.label for s in specs] == ["r50", "effnet_lite0"]
    assert specs[0].options == {"weights": str((tmp_path / "ckpt" / "r50.pth").resolve()),
                                "image_size": 224}
    assert specs[1].options == {}


@pytest.mark.parametrize("text, what", [
    ("[[encoder]]\nlabel = 'x'\n", "needs a string `name`"),
    ("[[model]]\nname = 'x'\n", r"\[\[encoder\]\] tables only"),
    ("[[encoder]]\nname = 'a'\nlabel = 'x'\n[[encoder]]\nname = 'b'\nlabel = 'x'\n",
     "share the label"),
    ("[[encoder]\nname = 'a'\n", "not valid TOML")])
def test_bad_zoo_files_are_named(tmp_path, text, what):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(text)
    with pytest.raises(TaskrelInputError, match=what):
        load_zoo(zoo)
    with pytest.raises(TaskrelInputError, match="no such file"):
        load_zoo(tmp_path / "missing.toml")
