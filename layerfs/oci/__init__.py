"""The one model of OCI / Docker image metadata: decoded and checked once, then typed.

- :mod:`.mediatypes` the media types and annotation keys;
- :mod:`.decode` the hand decoder's primitives (JSON parsing, shape checks);
- :mod:`.model` descriptors, indexes (manifest lists), image manifests;
- :mod:`.config` image configs (DiffIDs, history);
- :mod:`.platform` the host's platform, ``--platform``, matching;
- :mod:`.resolve` the one resolver: index -> platform's manifest -> config;
- :mod:`.layout` the OCI layout: read, and appended to (pull -o, commit --into).

Nothing here knows where the bytes come from: the image readers
(``layerfs.images``) and the registry client (``layerfs.registry``) fetch and
verify blobs and hand them in; this package imports neither.

Why a hand decoder and not msgspec or pydantic: measured (see the report of
issue 14 and ``tests/oci/test_decoder_choice.py``)... (filled in below)
"""
