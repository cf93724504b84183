"""Images straight from a registry, over the OCI distribution API.

- :mod:`.reference`: ``[docker://]REGISTRY/REPO[:TAG][@DIGEST]``;
- :mod:`.auth`: credentials (auth files, helpers) and Basic/Bearer challenges;
- :mod:`.http`: HTTP on httpx, and the retry policy (backoff, Retry-After, --insecure);
- :mod:`.client`: the distribution API of one repository (manifests, blobs);
- :mod:`.resolve`: index -> platform manifest -> config and layers;
- :mod:`.download`: one blob, resumable and verified;
- :mod:`.pull`: layers in parallel into the layer cache (and :mod:`.layout`);
- :mod:`.source`: ``docker://`` images for ``layerfs mount``;
- :mod:`.cli`: ``layerfs pull`` and the registry options of ``mount``.
"""
