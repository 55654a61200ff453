#!/usr/bin/env python3
"""Pushes a multi-platform image (linux/amd64 and linux/arm64) to a registry
through its HTTP API alone: no buildx, no daemon.

  push_index.py --registry 127.0.0.1:5000 --repo dwtest/multiarch --tag 1 \
      --seed v1 [--format oci|docker] [--single]

For each platform: one gzipped layer holding /platform and /seed (so every
seed gives new digests), an image config naming the platform and the layer's
diff id, and an image manifest, pushed by digest; then an image index (OCI,
`application/vnd.oci.image.index.v1+json`) or a Docker manifest list
(`application/vnd.docker.distribution.manifest.list.v2+json`) naming both,
pushed under the tag. With --single, only the linux/amd64 manifest is
pushed, under the tag itself (a one-platform image, no index). Prints one
JSON object:

  {"index": {"digest", "mediaType", "size"},
   "manifests": {"linux/amd64": digest, "linux/arm64": digest}}
"""
import argparse
import gzip
import hashlib
import http.client
import io
import json
import sys
import tarfile
import urllib.parse

TYPES = {
    "oci": {
        "index": "application/vnd.oci.image.index.v1+json",
        "manifest": "application/vnd.oci.image.manifest.v1+json",
        "config": "application/vnd.oci.image.config.v1+json",
        "layer": "application/vnd.oci.image.layer.v1.tar+gzip",
    },
    "docker": {
        "index": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifest": "application/vnd.docker.distribution.manifest.v2+json",
        "config": "application/vnd.docker.container.image.v1+json",
        "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    },
}
PLATFORMS = [("linux", "amd64"), ("linux", "arm64")]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    def __init__(self, hostport):
        self.hostport = hostport

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.hostport, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
        finally:
            conn.close()

    def put_blob(self, repo, data):
        digest = sha256(data)
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/",
                                             headers={"Content-Length": "0"})
        if status != 202:
            sys.exit(f"starting a blob upload to {repo}: HTTP {status}: {body[:200]!r}")
        loc = urllib.parse.urlsplit(headers["location"])
        query = loc.query + ("&" if loc.query else "") + urllib.parse.urlencode({"digest": digest})
        status, _, body = self.request(
            "PUT", f"{loc.path}?{query}", body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        if status != 201:
            sys.exit(f"uploading blob {digest} to {repo}: HTTP {status}: {body[:200]!r}")
        return digest

    def put_manifest(self, repo, ref, media_type, data):
        status, headers, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", body=data,
            headers={"Content-Type": media_type, "Content-Length": str(len(data))})
        if status != 201:
            sys.exit(f"putting manifest {repo}:{ref} ({media_type}): HTTP {status}: {body[:300]!r}")
        return headers.get("docker-content-digest")


def layer(seed, os_, arch):
    """A gzipped tar (deterministic bytes for one seed) and its diff id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in [("platform", f"{os_}/{arch}\n"), ("seed", f"{seed}\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as f:
        f.write(tar_bytes)
    return gz.getvalue(), sha256(tar_bytes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--seed", required=True)
    ap.add_argument("--format", choices=sorted(TYPES), default="oci")
    ap.add_argument("--single", action="store_true", help="one amd64 manifest under the tag, no index")
    a = ap.parse_args()
    t = TYPES[a.format]
    reg = Registry(a.registry)
    entries, digests = [], {}
    for os_, arch in PLATFORMS[:1] if a.single else PLATFORMS:
        blob, diff_id = layer(a.seed, os_, arch)
        layer_digest = reg.put_blob(a.repo, blob)
        config = json.dumps({
            "architecture": arch,
            "os": os_,
            "config": {"Cmd": ["/platform"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": f"push_index.py {a.seed}"}],
        }, sort_keys=True).encode()
        config_digest = reg.put_blob(a.repo, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": t["manifest"],
            "config": {"mediaType": t["config"], "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": t["layer"], "digest": layer_digest, "size": len(blob)}],
        }, sort_keys=True).encode()
        digest = sha256(manifest)
        reg.put_manifest(a.repo, a.tag if a.single else digest, t["manifest"], manifest)
        digests[f"{os_}/{arch}"] = digest
        entries.append({"mediaType": t["manifest"], "digest": digest, "size": len(manifest),
                        "platform": {"architecture": arch, "os": os_}})
    if a.single:
        json.dump({"index": None, "manifest": {"digest": digest, "mediaType": t["manifest"],
                                               "size": len(manifest)},
                   "manifests": digests}, sys.stdout)
        print()
        return
    index = json.dumps({"schemaVersion": 2, "mediaType": t["index"], "manifests": entries},
                       sort_keys=True).encode()
    got = reg.put_manifest(a.repo, a.tag, t["index"], index)
    want = sha256(index)
    if got and got != want:
        sys.exit(f"the registry names the index {got}, its bytes hash to {want}")
    json.dump({"index": {"digest": want, "mediaType": t["index"], "size": len(index)},
               "manifests": digests}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
