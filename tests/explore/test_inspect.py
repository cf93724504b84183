"""``layerfs inspect`` shows what ``skopeo inspect`` shows, for every form skopeo reads;
``--config`` and ``--raw`` print what ``skopeo inspect --config`` / ``--raw`` print."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.explore.images import have, run, umoci_image
from tests.support.mounting import run_layerfs

pytestmark = pytest.mark.skipif(not (have("umoci") and have("skopeo")),
                                reason="needs umoci and skopeo")


@pytest.fixture(scope="module")
def images(module_scratch: Path) -> dict[str, tuple[str, str]]:
    """form -> (skopeo's transport:path, layerfs's IMAGE) of one image with a full config."""
    layout = umoci_image(module_scratch / "inspect")
    run("umoci", "config", "--image", f"{layout}:v3", "--tag", "full",
        "--config.env", "PATH=/usr/bin", "--config.env", "LANG=C.UTF-8",
        "--config.entrypoint", "/bin/tool", "--config.cmd", "--serve",
        "--config.cmd", "now", "--config.workingdir", "/data", "--config.user", "1000:1000",
        "--config.label", "org.example.b=2", "--config.label", "org.example.a=1",
        "--config.exposedports", "8080/tcp", "--config.exposedports", "53/udp",
        "--architecture", "arm64", "--os", "linux")
    archive = module_scratch / "inspect" / "image.tar"
    skopeo_dir = module_scratch / "inspect" / "dir"
    docker_archive = module_scratch / "inspect" / "docker.tar"
    for target in (f"oci-archive:{archive}:full", f"dir:{skopeo_dir}",
                   f"docker-archive:{docker_archive}:example/full:latest"):
        run("skopeo", "copy", "-q", f"oci:{layout}:full", target)
    return {"oci": (f"oci:{layout}:full", f"{layout}:full"),
            "oci-archive": (f"oci-archive:{archive}:full", f"{archive}:full"),
            "dir": (f"dir:{skopeo_dir}", str(skopeo_dir)),
            "docker-archive": (f"docker-archive:{docker_archive}", str(docker_archive))}


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "inspect", *args], capture_output=True, check=True)


def layerfs(*args: str) -> subprocess.CompletedProcess:
    result = run_layerfs("inspect", *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("form", ["oci", "oci-archive", "dir", "docker-archive"])
def test_inspect_shows_what_skopeo_shows(images, form):
    reference, image = images[form]
    theirs = json.loads(skopeo(reference).stdout)
    config = json.loads(skopeo("--config", reference).stdout)["config"]
    ours = json.loads(layerfs("--json", image).stdout)
    if form != "docker-archive":  # skopeo makes up a manifest for a docker save archive
        assert ours["digest"] == theirs["Digest"]
    assert ours["created"] == theirs["Created"]
    assert (ours["architecture"], ours["os"]) == (theirs["Architecture"], theirs["Os"]) \
        == ("arm64", "linux")
    assert ours["env"] == theirs["Env"] == ["PATH=/usr/bin", "LANG=C.UTF-8"]
    assert ours["labels"] == theirs["Labels"] == {"org.example.a": "1", "org.example.b": "2"}
    assert ours["entrypoint"] == config["Entrypoint"] == ["/bin/tool"]
    assert ours["cmd"] == config["Cmd"] == ["--serve", "now"]
    assert (ours["working_dir"], ours["user"]) == (config["WorkingDir"], config["User"])
    assert ours["exposed_ports"] == sorted(config["ExposedPorts"]) == ["53/udp", "8080/tcp"]

    text = layerfs(image).stdout
    head, _, table = text.partition("\n\n")
    fields = {}
    name = ""
    for line in head.splitlines()[1:]:
        label, _, value = line.partition(":")
        if line[:1] != " ":
            name = label
        fields.setdefault(name, []).append(line.split(None, 1)[1] if line[:1] != " "
                                           else line.strip())
    assert fields["Env"] == theirs["Env"]
    assert fields["Labels"] == ["org.example.a=1", "org.example.b=2"]
    assert fields["Entrypoint"] == ['["/bin/tool"]'] and fields["User"] == ["1000:1000"]
    assert fields["Platform"] == ["linux/arm64"]
    assert table.splitlines()[0].split()[:2] == ["#", "DIFFID"]
    assert len(table.splitlines()) == 1 + len(theirs["Layers"])


@pytest.mark.parametrize("form", ["oci", "oci-archive", "dir", "docker-archive"])
def test_inspect_config_is_skopeos(images, form):
    reference, image = images[form]
    assert json.loads(layerfs("--config", image).stdout) == \
        json.loads(skopeo("--config", reference).stdout)


@pytest.mark.parametrize("form", ["oci", "oci-archive", "dir"])
def test_inspect_raw_is_the_stored_manifest(images, form):
    reference, image = images[form]
    assert layerfs("--raw", image).stdout.encode() == skopeo("--raw", reference).stdout


def test_inspect_raw_of_an_archive_without_manifest_is_one_line(images):
    result = run_layerfs("inspect", "--raw", images["docker-archive"][1])
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "no manifest" in result.stderr
