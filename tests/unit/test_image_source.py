"""archive.py reads an image source in-process: the three formats, the config's run settings,
the layers with the digests they must have, and member paths that are refused."""
import hashlib
import json

import pytest

import imagekit as kit
from sandbox import archive
from sandbox.archive import Archive, ArchiveError

LAYERS = [kit.layer([("etc", ("dir",)), ("etc/motd", b"one\n")]), kit.layer([("box", ("dir",))])]
CONFIG = kit.config_for(LAYERS, env=["PATH=/bin", "A=1"], workdir="/work", user="1000:100", cmd=["/bin/sh", "-l"])
DIFF_IDS = [hashlib.sha256(layer).hexdigest() for layer in LAYERS]


def read(path):
    with Archive(str(path)) as src:
        fmt, config, layers = archive.contents(src, "test")
        return fmt, config, [(where, blob, diff_id, opener().read()) for opener, where, blob, diff_id in layers]


def test_docker_save(tmp_path):
    kit.docker_save(str(tmp_path / "ds.tar"), LAYERS, config=json.loads(json.dumps(CONFIG)))
    fmt, config, layers = read(tmp_path / "ds.tar")
    assert fmt == "docker-save"
    assert config == {"Env": ["PATH=/bin", "A=1"], "Cmd": ["/bin/sh", "-l"], "Entrypoint": None, "WorkingDir": "/work",
                      "User": "1000:100"}
    assert [(blob, diff_id, data) for _, blob, diff_id, data in layers] == [
        (None, DIFF_IDS[0], LAYERS[0]), (None, DIFF_IDS[1], LAYERS[1])]
    assert "docker-save layer 1 (layer1/layer.tar)" in layers[1][0]


@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout_as_a_directory_or_a_tar(tmp_path, as_tar):
    path = tmp_path / ("oci.tar" if as_tar else "oci")
    kit.oci_layout(str(path), LAYERS, config=CONFIG, as_tar=as_tar, compress=False)
    fmt, config, layers = read(path)
    assert fmt == "oci" and config["WorkingDir"] == "/work" and config["User"] == "1000:100"
    assert [d for _, _, d, _ in layers] == DIFF_IDS
    assert [blob for _, blob, _, _ in layers] == ["sha256:" + h for h in DIFF_IDS]      # uncompressed: blob = tar


def test_a_plain_tar_is_a_root_filesystem(tmp_path):
    path = tmp_path / "root.tar"
    path.write_bytes(LAYERS[0])
    fmt, config, layers = read(path)
    assert fmt == "rootfs-tar" and config["WorkingDir"] == "/" and config["Cmd"] == ["/bin/sh"]
    assert len(layers) == 1 and layers[0][2] is None and layers[0][3] == LAYERS[0]


def test_a_docker_config_is_verified_by_its_digest(tmp_path):
    members = kit.docker_members(LAYERS, CONFIG)
    name = next(n for n in members if n.endswith(".json") and n != "manifest.json")
    members[name] = members[name].replace(b"/work", b"/evil")
    kit.write_tar(str(tmp_path / "bad.tar"), members)
    with pytest.raises(ArchiveError, match="digest mismatch"):
        read(tmp_path / "bad.tar")
    kit.write_tar(str(tmp_path / "nodigest.tar"), kit.docker_members(LAYERS, CONFIG, config_name="config.json"))
    with pytest.raises(ArchiveError, match="carries no sha256 digest"):
        read(tmp_path / "nodigest.tar")


def test_a_directory_that_is_no_image(tmp_path):
    with pytest.raises(ArchiveError, match="without index.json or manifest.json"):
        read(tmp_path)


@pytest.mark.parametrize("name, member", [
    ("manifest.json", "manifest.json"), ("./manifest.json", "manifest.json"), ("a/./b", "a/b"),
    (".hidden", ".hidden"), ("a/.wh.x", "a/.wh.x"), ("a//b", "a/b"),
    ("/etc/passwd", None), ("../x", None), ("a/../../x", None), ("a/..", None), ("a\0b", None), (".", None), ("", None),
])
def test_member_paths(name, member):
    assert archive._member(name) == member
