"""Image layers that keep their tar's ownership, for runs with `user: {map: subordinate}`.

A layer is unpacked once, flattened: every file the caller's (layers.py).  That is what runs
with the default single-id map use, unchanged and at no extra cost.  A run with subordinate ids
(inside 0 = the caller, 1-65535 = its /etc/subuid and /etc/subgid range) gets instead, for each
layer the tar gives to anyone but 0:0, a copy whose entries carry the tar's owners, made once
per mapping and kept in the store:

    owners/<diff_id>                    the tar's owners (layers.py records them at import)
    layers/<diff_id>.ids-<KEY>/root     the layer with those owners, for the mapping KEY (the
                                        uid and gid maps, e.g. u0-1000-1-1-100000-65535_g...)
    layers/<diff_id>.ids-<KEY>.lock     flock while it is made: one process copies, others wait

The copy is made, and removed, by idtree.py as uid 0 of a user namespace with that mapping
(idhelper.py): only there can the caller chown to its subordinate ids, or remove what they own.
A layer whose tar gives everything to 0:0 needs no copy (inside 0 is the caller, who owns the
flattened layer); a layer imported before ownership was recorded (no owners/ file) is used flattened
-- re-import the image for its owners.  Ids above what the mapping covers become 65534
(idtree.py), as the kernel shows an id a namespace does not map.
"""
import os

from . import idhelper


def key(ids):
    uid_map, gid_map = ids
    return "ids-u" + "-".join(uid_map.split()) + "_g" + "-".join(gid_map.split())


def needs_copy(store, diff_id):
    """Does the tar give some entry of this layer to anyone but 0:0?  False also for a layer
    imported before owners were recorded (it is used flattened)."""
    try:
        return os.stat(store.owners_path(diff_id)).st_size > 0
    except FileNotFoundError:
        return False


def lower(store, diff_id, ids):
    """The directory a subordinate-id run uses as this layer."""
    if not needs_copy(store, diff_id):
        return store.layer_path(diff_id)
    return os.path.join(f"{store.layer_path(diff_id)}.{key(ids)}", "root")


def missing(store, diff_ids, ids):
    return [d for d in diff_ids if needs_copy(store, d) and not os.path.isdir(lower(store, d, ids))]


def ensure(store, diff_ids, ids, where="owned_layers"):
    """Make the copies this mapping lacks; one process at a time per copy (flock)."""
    import fcntl
    import uuid
    for diff_id in missing(store, diff_ids, ids):
        container = f"{store.layer_path(diff_id)}.{key(ids)}"
        fd = os.open(container + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.isdir(container):
                continue                                    # another run made it meanwhile
            stage = os.path.join(store.tmp, uuid.uuid4().hex)
            os.makedirs(stage)
            try:
                idhelper.run(["copy", "/src", "/stage/root", "/owners", str(idhelper.top_id(ids[0])),
                              str(idhelper.top_id(ids[1]))],
                             [(store.layer_path(diff_id), "/src", False), (store.owners_path(diff_id), "/owners", False),
                              (stage, "/stage", True)], f"{where}: layer sha256:{diff_id[:12]}")
                os.rename(stage, container)                 # the container is the caller's: no write needed
            except BaseException:
                remove([stage], where)
                raise
        finally:
            os.close(fd)


def remove(containers, where):
    """Remove variant containers (or staging directories): their root/ is removed where the
    subordinate ids are mapped, the caller's container then."""
    from .hostids import caller_is_root
    import shutil
    for c in containers:
        if not os.path.isdir(c):
            continue
        if os.path.lexists(os.path.join(c, "root")):
            if caller_is_root():
                shutil.rmtree(os.path.join(c, "root"))      # root owns the host's every id
            else:
                idhelper.run(["rm", "/v/root"], [(c, "/v", True)], where)
        shutil.rmtree(c)
