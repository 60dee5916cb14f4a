"""RFC 6962 Merkle tree: published test vectors, and every index and size of small trees
against the RFC's recursive definition.

Vectors: the eight-leaf tree of Certificate Transparency's reference tests, with roots
and proofs from transparency-dev/merkle ``testdata/inclusion/*/happy-path.json`` and
``testdata/consistency/*/happy-path.json`` (Apache-2.0), copied here as data.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from community_ade.audit import merkle

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def b64(text: str) -> bytes:
    return base64.b64decode(text)


ROOT = {
    1: b64("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="),
    2: b64("+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="),
    3: b64("rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc="),
    5: b64("Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ="),
    6: b64("duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8="),
    7: b64("3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw="),
    8: b64("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="),
}
INCLUSION = [  # (index, size, proof)
    (0, 8, ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="]),
    (1, 5, ["bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="]),
    (2, 3, ["+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="]),
]  # fmt: skip
CONSISTENCY = [  # (old, new, proof)
    (1, 8, ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="]),
    (6, 8, ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="]),
    (2, 5, ["Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="]),
    (6, 7, ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="]),
]  # fmt: skip


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1, word for word (over leaf hashes)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return merkle.node_hash(mth(hashes[:k]), mth(hashes[k:]))


class Store:
    """The node table as storage keeps it, filled by appends only."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0

    def node(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]  # KeyError: asked for an incomplete node

    def append(self, entry: bytes) -> None:
        for level, index, value in merkle.new_nodes(self.size, merkle.leaf_hash(entry), self.node):
            self.nodes[(level, index)] = value
        self.size += 1


def store_of(entries: list[bytes]) -> Store:
    store = Store()
    for entry in entries:
        store.append(entry)
    return store


STORE = store_of(LEAVES)


@pytest.mark.parametrize("size", sorted(ROOT))
def test_roots_match_the_vectors(size: int) -> None:
    assert merkle.root(size, STORE.node) == ROOT[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_vectors(index: int, size: int, proof: list[str]) -> None:
    expected = [b64(p) for p in proof]
    assert merkle.inclusion_proof(index, size, STORE.node) == expected
    merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), expected, ROOT[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_vectors(old: int, new: int, proof: list[str]) -> None:
    expected = [b64(p) for p in proof]
    assert merkle.consistency_proof(old, new, STORE.node) == expected
    merkle.verify_consistency(old, new, ROOT[old], ROOT[new], expected)


def test_every_index_and_size_up_to_40() -> None:
    entries = [f"entry {i}".encode() for i in range(40)]
    hashes = [merkle.leaf_hash(e) for e in entries]
    store = store_of(entries)
    for size in range(1, 41):
        root = merkle.root(size, store.node)
        assert root == mth(hashes[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, store.node)
            merkle.verify_inclusion(index, size, hashes[index], proof, root)
            other = hashes[index - 1] if index else merkle.leaf_hash(b"forged")
            with pytest.raises(merkle.ProofError):  # another leaf is not at this index
                merkle.verify_inclusion(index, size, other, proof, root)
        for old in range(1, size + 1):
            proof = merkle.consistency_proof(old, size, store.node)
            old_root = mth(hashes[:old])
            merkle.verify_consistency(old, size, old_root, root, proof)
            if old < size:
                with pytest.raises(merkle.ProofError):  # a rewritten old tree is caught
                    merkle.verify_consistency(old, size, merkle.leaf_hash(b"forged"), root, proof)


def test_tampering_is_caught() -> None:
    index, size, proof = INCLUSION[0]
    path = [b64(p) for p in proof]
    leaf = merkle.leaf_hash(LEAVES[index])
    for bad in (
        lambda: merkle.verify_inclusion(index, size, leaf, path[:-1], ROOT[size]),
        lambda: merkle.verify_inclusion(index, size, leaf, [*path, path[0]], ROOT[size]),
        lambda: merkle.verify_inclusion(index + 1, size, leaf, path, ROOT[size]),
        lambda: merkle.verify_inclusion(index, size * 2, leaf, path, ROOT[size]),
        lambda: merkle.verify_inclusion(index, size, leaf, path, ROOT[7]),
        lambda: merkle.verify_inclusion(size, size, leaf, path, ROOT[size]),
        lambda: merkle.verify_consistency(6, 8, ROOT[6], ROOT[8], []),
        lambda: merkle.verify_consistency(8, 6, ROOT[8], ROOT[6], []),
        lambda: merkle.verify_consistency(8, 8, ROOT[8], ROOT[7], []),
    ):
        with pytest.raises(merkle.ProofError):
            bad()


def test_needed_names_only_complete_perfect_subtrees() -> None:
    store = store_of([str(i).encode() for i in range(1000)])
    for index, size in ((0, 1000), (999, 1000), (513, 700), (3, 5)):
        keys = merkle.needed(lambda node, i=index, s=size: merkle.inclusion_proof(i, s, node))
        assert keys <= set(store.nodes)
        assert len(keys) <= 2 * (size.bit_length() + 1)
