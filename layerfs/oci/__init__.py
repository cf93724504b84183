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

Why frozen dataclasses and a small hand decoder, not msgspec (or pydantic):
measured with ``bench/oci_decoders.py`` (3,000 documents of the fuzz tests'
hostile corpus; an index of 50,000 entries). msgspec 0.23 is faster (corpus
0.02 s against 0.05 s; the 50,000-entry index 0.13 s against 2.1 s, a
20-entry one 0.06 ms against 0.3 ms, both nothing next to reading the blobs)
and its errors do name the path (``at `$.manifests[0]```). But it refuses
70 of the 3,000 documents that layerfs accepts on purpose (index entries
that are not objects, a ``platform`` that is not an object: tests/hostile
holds real images to those rules), and its messages are not the ones users
and tests rely on (``index.json: descriptor 'digest' is not a string``).
Fitting it would mean ``Any`` fields checked by hand plus a translation of
its error strings: a hand decoder on top of a compiled dependency. So the
decoder is ours (:mod:`.decode`), about 100 lines, and its errors say
``FILE: what is wrong (at FIELD.PATH)``.
"""
