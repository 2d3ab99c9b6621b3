"""Reads a multi-architecture OCI archive (scripts/build-image's) back and checks what a
registry and a container runtime will rely on:

- an OCI image layout (`oci-layout`, `index.json`) whose index names one image list, and
  every blob it reaches matches its digest;
- the list holds exactly the platforms expected, each entry's config says the same
  platform, runs as 65532:65532 with the binary as entrypoint and `health` as its check;
- each image's file system has the binary (the right ELF machine, byte for byte the file
  given), the CA certificates, the RDS bundle and the out-dir owned by 65532;
- with an image id given, the config is that Docker image's (the one the tests ran);
- and that these checks can fail: the same archive with its platform labels swapped must
  be refused for every image's config and binary.

Usage: check_image_archive.py ARCHIVE PLATFORM=BINARY[@IMAGE_ID] PLATFORM=BINARY[@IMAGE_ID] ...
  e.g. linux/amd64=target/dist/linux/amd64/aurora-sidecar@sha256:…
Exit 0 when everything holds, 1 with the failures listed.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

BINARY = "usr/local/bin/aurora-sidecar"
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
LIST_TYPES = ("application/vnd.oci.image.index.v1+json",
              "application/vnd.docker.distribution.manifest.list.v2+json")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


class Layout:
    """The archive's files, and its blobs checked against their digests."""

    def __init__(self, path):
        with tarfile.open(path) as tar:
            self.files = {m.name.lstrip("./"): tar.extractfile(m).read() for m in tar if m.isfile()}

    def json(self, name):
        return json.loads(self.files[name])

    def blob(self, digest):
        algo, _, hexdigest = digest.partition(":")
        data = self.files.get(f"blobs/{algo}/{hexdigest}")
        if not check(data is not None, f"blob {digest} is missing"):
            return b""
        check(algo == "sha256" and hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} does not match its digest")
        return data


def rootfs(layout, manifest):
    """The image's files after its layers are applied in order: path -> (TarInfo, bytes)."""
    files = {}
    for layer in manifest["layers"]:
        data = layout.blob(layer["digest"])
        if layer["mediaType"].endswith("gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                content = tar.extractfile(m).read() if m.isfile() else b""
                files[m.name.lstrip("./").rstrip("/")] = (m, content)
    return files


def check_image(layout, entry, binary, image_id):
    platform = f"{entry['platform']['os']}/{entry['platform']['architecture']}"
    arch = entry["platform"]["architecture"]
    manifest = json.loads(layout.blob(entry["digest"]))
    config_digest = manifest["config"]["digest"]
    config = json.loads(layout.blob(config_digest))
    check(f"{config['os']}/{config['architecture']}" == platform, f"{platform}: its config says {config['os']}/{config['architecture']}")
    if image_id:
        check(config_digest == image_id, f"{platform}: config {config_digest} is not the tested image {image_id}")
    c = config["config"]
    check(c.get("User") == "65532:65532", f"{platform}: user {c.get('User')}")
    check(c.get("Entrypoint") == ["/" + BINARY], f"{platform}: entrypoint {c.get('Entrypoint')}")
    check((c.get("Healthcheck") or {}).get("Test") == ["CMD", "/" + BINARY, "health"], f"{platform}: no health check")
    files = rootfs(layout, manifest)
    info, content = files.get(BINARY, (None, b""))
    if check(info is not None, f"{platform}: no {BINARY}"):
        check(info.mode & 0o111 != 0, f"{platform}: {BINARY} is not executable")
        # ELF: magic, 64-bit, little endian; e_machine at offset 18.
        check(content[:6] == b"\x7fELF\x02\x01", f"{platform}: {BINARY} is not a 64-bit little-endian ELF")
        machine = int.from_bytes(content[18:20], "little")
        check(machine == ELF_MACHINE.get(arch), f"{platform}: {BINARY} is ELF machine {machine}, not {ELF_MACHINE.get(arch)}")
        with open(binary, "rb") as f:
            check(content == f.read(), f"{platform}: {BINARY} is not {binary}")
    for path in ("etc/ssl/certs/ca-certificates.crt", "etc/aurora-sidecar/rds-global-bundle.pem"):
        check(b"BEGIN CERTIFICATE" in files.get(path, (None, b""))[1], f"{platform}: no certificates in /{path}")
    out_dir = files.get("run/aurora-sidecar", (None,))[0]
    check(out_dir is not None and out_dir.isdir() and out_dir.uid == 65532, f"{platform}: /run/aurora-sidecar is not 65532's directory")
    return platform


def check_layout(layout, expected):
    """Every check above on one layout; the name the list is tagged with."""
    check(layout.json("oci-layout").get("imageLayoutVersion") == "1.0.0", "not an OCI image layout 1.0.0")
    index = layout.json("index.json")
    check(len(index["manifests"]) == 1, f"index.json names {len(index['manifests'])} images, not one list")
    top = index["manifests"][0]
    check(top["mediaType"] in LIST_TYPES, f"index.json names a {top['mediaType']}, not an image list")
    name = top.get("annotations", {}).get("org.opencontainers.image.ref.name")
    check(name is not None, "the list has no reference name")
    image_list = json.loads(layout.blob(top["digest"]))
    seen = []
    for entry in image_list["manifests"]:
        platform = f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        if check(platform in expected, f"unexpected platform {platform}"):
            seen.append(check_image(layout, entry, *expected[platform]))
    check(sorted(seen) == sorted(expected), f"platforms {sorted(seen)}, expected {sorted(expected)}")
    return name


def mislabel(layout):
    """The same layout with the platforms of its list's first two entries swapped (the list
    blob rewritten under its new digest): each label then names the other's image."""
    index = layout.json("index.json")
    image_list = json.loads(layout.blob(index["manifests"][0]["digest"]))
    a, b = image_list["manifests"][:2]
    a["platform"], b["platform"] = b["platform"], a["platform"]
    data = json.dumps(image_list).encode()
    digest = hashlib.sha256(data).hexdigest()
    layout.files[f"blobs/sha256/{digest}"] = data
    index["manifests"][0]["digest"] = f"sha256:{digest}"
    layout.files["index.json"] = json.dumps(index).encode()


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    expected = {}
    for arg in argv[2:]:
        platform, _, rest = arg.partition("=")
        binary, _, image_id = rest.partition("@")
        expected[platform] = (binary, image_id)
    layout = Layout(argv[1])
    name = check_layout(layout, expected)
    if failures:
        print("\n".join(f"FAIL {f}" for f in failures))
        sys.exit(1)
    # The checks must be able to fail: with the labels swapped, each config and each
    # binary is found on the wrong platform.
    mislabel(layout)
    check_layout(layout, expected)
    caught = [f for f in failures if "its config says" in f or "is ELF machine" in f]
    if len(caught) < 2 * len(expected):
        print(f"FAIL the mislabelled copy was not refused for each platform's config and binary: {failures}")
        sys.exit(1)
    print(f"{argv[1]}: {name}, one list of {', '.join(sorted(expected))}; each image's binary is its "
          f"platform's ELF, byte for byte the tested one (a mislabelled copy is refused)")


if __name__ == "__main__":
    main(sys.argv)
