"""The pure parts: owner maps (fuse-overlayfs's options), /etc/subuid ranges, the
namespace's maps, and the one-line reasons a user namespace cannot be made."""

from __future__ import annotations

import errno
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerfs import userns
from layerfs.errors import UsageError
from layerfs.idmap import IDENTITY, IdMap, IdRange, build_id_map, parse_mapping
from layerfs.options import parse_options


def test_mapping_spelling_is_a_uid_map_on_one_line():
    assert parse_mapping("uidmapping", "0:1000:1:1:110000:65536") == (
        IdRange(0, 1000, 1), IdRange(1, 110000, 65536))


@pytest.mark.parametrize("value", ["", "0:1", "0:1:0", "a:1:1", "0:1:1:2", "-1:0:1",
                                   "0:0:10:5:100:1", "0:0:10:100:5:1", "4294967295:0:2"])
def test_bad_mappings_are_one_line_usage_errors(value):
    with pytest.raises(UsageError) as caught:
        parse_mapping("uidmapping", value)
    assert "\n" not in str(caught.value) and "uidmapping=" in str(caught.value)


def test_ranges_show_stored_ids_and_store_shown_ones():
    ids = IdMap(uid_ranges=parse_mapping("u", "0:1000:1:1:100000:65536"),
                gid_ranges=parse_mapping("g", "0:1000:1"), overflow_uid=65534,
                overflow_gid=65533)
    assert ids.shown_uid(1000) == 0 and ids.shown_uid(100000) == 1
    assert ids.shown_uid(100999) == 1000
    assert ids.shown_uid(0) == 65534  # not covered: the overflow id
    assert ids.shown_gid(5) == 65533
    assert ids.new_owner(1000, 0) == (100999, 1000)
    assert ids.chown_to(1000, None) == (100999, None)
    with pytest.raises(OSError) as caught:
        ids.new_owner(0, 7)
    assert caught.value.errno == errno.EOVERFLOW
    with pytest.raises(OSError) as caught:
        ids.chown_to(70000, None)
    assert caught.value.errno == errno.EINVAL


def test_squash_options_take_precedence_as_in_fuse_overlayfs():
    ids = build_id_map({"squash_to_root": None, "squash_to_uid": "7"})
    assert (ids.shown_uid(1000), ids.shown_gid(1000)) == (7, 0)
    # Squashing shows; what is stored stays what the caller is (no ranges).
    assert ids.new_owner(1000, 1000) == (1000, 1000)
    assert ids.chown_to(5, 6) == (5, 6)


def test_as_me_shows_the_callers_ids_and_refuses_other_id_options():
    ids = build_id_map({}, as_me=True)
    assert (ids.shown_uid(0), ids.shown_gid(1234)) == (os.geteuid(), os.getegid())
    with pytest.raises(UsageError):
        build_id_map({"squash_to_root": None}, as_me=True)


def test_identity_without_options():
    assert build_id_map({}).is_identity and IDENTITY.shown_uid(42) == 42


def test_mount_options_collect_id_options():
    options = parse_options(["squash_to_root,uidmapping=0:1000:1,squash_to_gid=5,ro"])
    assert options.ids == {"squash_to_root": None, "uidmapping": "0:1000:1",
                           "squash_to_gid": "5"}
    with pytest.raises(UsageError):
        build_id_map(parse_options(["squash_to_uid=x"]).ids)


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 300)), min_size=1, max_size=4),
       st.integers(0, 10**6))
def test_ranges_round_trip(starts, stored):
    # Ranges laid out without overlap on both sides: show then store is the identity.
    triples, container, host = [], 0, 10**5
    for gap, size in starts:
        triples += [container, host + gap, size]
        container += size + 3
        host += gap + size
    value = ":".join(map(str, triples))
    ids = IdMap(uid_ranges=parse_mapping("uidmapping", value), overflow_uid=-1)
    shown = ids.shown_uid(stored)
    if shown != -1:
        assert ids.chown_to(shown, None)[0] == stored


# -- the namespace's maps ---------------------------------------------------------------

SUBUID = """\
# comment
alice:100000:65536
bob:165536:65536
1001:300000:10
alice:500000:0
alice:x:1
"""


def test_subordinate_ranges_by_name_or_id():
    assert userns.subordinate_ranges(SUBUID, "alice", 1000) == [(100000, 65536)]
    assert userns.subordinate_ranges(SUBUID, "carol", 1001) == [(300000, 10)]
    assert userns.subordinate_ranges(SUBUID, "dave", 1002) == []


def test_map_lines_put_the_caller_at_0_and_ranges_after():
    assert userns.map_lines(1000, [(100000, 65536), (300000, 10)]) == (
        (0, 1000, 1), (1, 100000, 65536), (65537, 300000, 10))


def test_plan_without_subordinate_ids_is_the_single_map_with_a_note(tmp_path):
    empty = tmp_path / "subuid"
    empty.write_text("")
    mapping, note = userns.plan_mapping(uid=4321, gid=4322, subuid=str(empty),
                                        subgid=str(empty))
    assert mapping.uids == ((0, 4321, 1),) and not mapping.subordinate
    assert note is not None and "no subordinate ids" in note and "usermod" in note
    assert "\n" not in note


def test_plan_with_subordinate_ids(tmp_path, monkeypatch):
    grants = tmp_path / "subid"
    grants.write_text("4321:200000:1000\n")  # by id: no such user name
    plan = dict(uid=4321, gid=4322, subuid=str(grants), subgid=str(grants))
    monkeypatch.setattr(userns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    mapping, note = userns.plan_mapping(**plan)
    assert note is None and mapping.subordinate
    assert mapping.gids == ((0, 4322, 1), (1, 200000, 1000))
    monkeypatch.setattr(userns.shutil, "which", lambda tool: None)
    mapping, note = userns.plan_mapping(**plan)
    assert not mapping.subordinate and "uidmap" in note


def test_root_maps_every_id_as_itself():
    mapping, note = userns.plan_mapping(uid=0, gid=0)
    assert mapping.uids == mapping.gids == ((0, 0, userns.ALL_IDS),) and note is None


@pytest.mark.parametrize("knobs, expected", [
    ({"user/max_user_namespaces": "0"}, "sysctl -w user.max_user_namespaces=15000"),
    ({"kernel/unprivileged_userns_clone": "0"}, "sysctl -w kernel.unprivileged_userns_clone=1"),
    ({"kernel/apparmor_restrict_unprivileged_userns": "1"}, "apparmor_restrict"),
])
def test_disabled_user_namespaces_say_what_to_do(monkeypatch, knobs, expected):
    monkeypatch.setattr(userns, "_knob", lambda name: knobs.get(name))
    message = userns.unshare_failure(errno.EPERM)
    assert expected in message and "\n" not in message


def test_mapped_mount_shows_translated_owners_and_stores_them_back(scratch, needs_root):
    from tests.support.mounting import layerfs_mounted
    lower, upper, work, mnt = (scratch / name for name in ("lower", "upper", "work", "mnt"))
    for path in (lower, upper, work, mnt):
        path.mkdir()
    (lower / "a").write_text("a")
    (lower / "b").write_text("b")
    os.chown(lower / "b", 1000, 1000)
    options = ("-o", f"lowerdir={lower},upperdir={upper},workdir={work},"
               "uidmapping=0:1000:2000,gidmapping=0:1000:2000")
    with layerfs_mounted(mnt, *options):
        shown = {name: os.stat(mnt / name) for name in ("a", "b")}
        (mnt / "new").write_text("n")
        created = os.stat(mnt / "new")
        os.chown(mnt / "new", 5, 6)
        chowned = os.stat(mnt / "new")
        with pytest.raises(OSError) as caught:
            os.chown(mnt / "new", 3000, -1)
        owner = os.getxattr(mnt / "b", "user.layerfs.owner")
    assert (shown["a"].st_uid, shown["a"].st_gid) == (65534, 65534)  # 0 is not covered
    assert (shown["b"].st_uid, shown["b"].st_gid) == (0, 0)
    assert (created.st_uid, chowned.st_uid, chowned.st_gid) == (0, 5, 6)
    assert caught.value.errno == errno.EINVAL
    assert owner == b"1000:1000"
    on_disk = os.lstat(upper / "new")
    assert (on_disk.st_uid, on_disk.st_gid) == (1005, 1006)


def test_layerfs_overlay_takes_fuse_overlayfs_id_options(scratch):
    import subprocess

    from tests.support.mounting import force_unmount, layerfs_env, wait_for_mount
    lower, mnt = scratch / "lower", scratch / "mnt"
    lower.mkdir()
    mnt.mkdir()
    (lower / "f").write_text("f")
    process = subprocess.Popen(
        [sys.executable, "-m", "layerfs.overlay_cli", "-f", "-o",
         f"lowerdir={lower},squash_to_uid=77,squash_to_gid=88", str(mnt)],
        env=layerfs_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_mount(mnt, process)
        st = os.stat(mnt / "f")
    finally:
        force_unmount(mnt)
        process.terminate()
        process.communicate(timeout=30)
    assert (st.st_uid, st.st_gid) == (77, 88)
