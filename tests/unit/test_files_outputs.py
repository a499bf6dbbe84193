"""files.outputs on a directory descriptor of a tree built here: what is read back, and
one error per file for everything else (the program made that tree)."""
import os

import pytest

from sandbox import files


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "work"
    (d / "sub").mkdir(parents=True)
    (d / "out.txt").write_bytes(b"answer\n")
    (d / "sub" / "deep.txt").write_bytes(b"deep")
    (d / "big").write_bytes(b"x" * 2000)
    (d / "dir").mkdir()
    os.symlink("/etc/passwd", d / "link")
    os.symlink("sub", d / "linkdir")
    os.mkfifo(d / "fifo")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_files_are_read_back_and_each_failure_is_its_own(workdir):
    names = ["/box/out.txt", "/box/sub/deep.txt", "/box/big", "/box/dir", "/box/link", "/box/linkdir/deep.txt",
             "/box/fifo", "/box/missing", "/etc/passwd", "/box/../etc/passwd", "/box"]
    got, errors = files.outputs(workdir, "/box", names, max_bytes=1000)
    assert got == {"/box/out.txt": b"answer\n", "/box/sub/deep.txt": b"deep"}
    errors = {e["name"]: e["error"] for e in errors}
    assert set(errors) == set(names) - set(got)
    assert "more than the cap of 1000" in errors["/box/big"]
    assert errors["/box/dir"] == errors["/box/fifo"] == "not a regular file"
    assert "symlink is never followed" in errors["/box/link"]
    assert "not a directory of the run" in errors["/box/linkdir/deep.txt"]
    assert errors["/box/missing"] == "the run did not leave this file"
    for outside in ("/etc/passwd", "/box/../etc/passwd", "/box"):
        assert "only files under the working directory /box" in errors[outside], outside


def test_relative_names_are_taken_in_the_working_directory(workdir):
    assert files.outputs(workdir, "/box", ["out.txt"])[0] == {"out.txt": b"answer\n"}


def test_a_root_working_directory(workdir):
    assert files.outputs(workdir, "/", ["/out.txt"])[0] == {"/out.txt": b"answer\n"}


def test_no_descriptor_means_every_file_is_an_error():
    got, errors = files.outputs(None, "/box", ["/box/a"])
    assert got == {} and errors == [{"name": "/box/a", "error": "the run ended before its working directory existed"}]


def test_no_descriptor_is_left_open(workdir):
    before = sorted(os.listdir("/proc/self/fd"))
    files.outputs(workdir, "/box", ["/box/sub/deep.txt", "/box/linkdir/deep.txt", "/box/big", "/box/out.txt"], 1000)
    assert sorted(os.listdir("/proc/self/fd")) == before
