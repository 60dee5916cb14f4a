"""RFC 6962 Merkle trees over the audit log, pure: hashing, proofs, verification.

The audit log is the tree's leaves in ``seq`` order (leaf index = seq - 1). A leaf hash
is ``SHA-256(0x00 || entry)``, an interior node ``SHA-256(0x01 || left || right)``, and
a tree of n leaves splits at the largest power of two below n (RFC 6962 §2.1).

Storage keeps the root of every *perfect* subtree that is complete: node ``(level,
index)`` covers leaves ``[index·2^level, (index+1)·2^level)``. Appending leaf n completes
one node per trailing one-bit of n (two rows per leaf on average, never a recomputation),
and any root or proof the log needs is made of such nodes: ``decompose`` splits a leaf
range into them. The functions here take ``node(level, index) -> bytes`` and call it only
for complete perfect subtrees; ``needed`` runs a computation once with a recording
``node`` to learn which, so storage can fetch them all in one query.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), and is
what an auditor runs offline: it needs no storage at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence

HASH_SIZE = 32
Node = Callable[[int, int], bytes]
"""``node(level, index)``: the root of the complete perfect subtree at that place."""


def lookup(nodes: Mapping[tuple[int, int], bytes]) -> Node:
    """``node`` over a mapping of stored nodes (``KeyError`` for one that is missing)."""
    return lambda level, index: nodes[(level, index)]


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 6962 §2.1: the hash of the empty string)."""


def _split(n: int) -> int:
    """The largest power of two smaller than n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def decompose(begin: int, end: int) -> Iterator[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up leaves ``[begin, end)``, left
    to right, each as large as its alignment allows."""
    while begin < end:
        size = begin & -begin if begin else 1 << (end.bit_length())
        while size > end - begin:
            size >>= 1
        level = size.bit_length() - 1
        yield level, begin >> level
        begin += size


def subtree_root(begin: int, end: int, node: Node) -> bytes:
    """MTH(D[begin:end]) for a range the RFC's recursion visits (``begin`` aligned to the
    largest power of two below the range's size): the right fold of its perfect parts."""
    if begin == end:
        return EMPTY_ROOT
    parts = [node(level, index) for level, index in decompose(begin, end)]
    root = parts[-1]
    for part in reversed(parts[:-1]):
        root = node_hash(part, root)
    return root


def root(size: int, node: Node) -> bytes:
    """The root of the tree of the first ``size`` leaves."""
    return subtree_root(0, size, node)


def new_nodes(size: int, leaf: bytes, node: Node) -> list[tuple[int, int, bytes]]:
    """The nodes appending ``leaf`` as leaf number ``size`` completes: the leaf itself,
    then one parent per trailing one-bit of ``size`` (its left siblings from ``node``)."""
    completed = [(0, size, leaf)]
    level, index, value = 0, size, leaf
    while index & 1:
        value = node_hash(node(level, index - 1), value)
        level, index = level + 1, index >> 1
        completed.append((level, index, value))
    return completed


def inclusion_proof(index: int, size: int, node: Node) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    proof: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            proof.append(subtree_root(begin + k, end, node))
            end = begin + k
        else:
            proof.append(subtree_root(begin, begin + k, node))
            begin += k
    return proof[::-1]


def consistency_proof(old: int, new: int, node: Node) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 6962 §2.1.2."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    proof: list[bytes] = []

    def subproof(m: int, begin: int, end: int, whole: bool) -> None:
        if m == end - begin:
            if not whole:
                proof.append(subtree_root(begin, end, node))
            return
        k = _split(end - begin)
        if m <= k:
            subproof(m, begin, begin + k, whole)
            proof.append(subtree_root(begin + k, end, node))
        else:
            subproof(m - k, begin + k, end, False)
            proof.append(subtree_root(begin, begin + k, node))

    if old < new:
        subproof(old, 0, new, True)
    return proof


def needed(compute: Callable[[Node], object]) -> set[tuple[int, int]]:
    """The nodes ``compute`` reads (it runs once on placeholder hashes)."""
    keys: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        keys.add((level, index))
        return bytes(HASH_SIZE)

    compute(record)
    return keys


# -- verification (RFC 9162), for anyone holding a proof ---------------------------------


class ProofError(ValueError):
    """A proof does not verify."""


def _climb(fn: int, sn: int, start: bytes, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The walk RFC 9162 §2.1.3.2 and §2.1.4.2 share: from node ``fn`` of a tree whose
    last node is ``sn``, fold ``path`` into two roots: ``fr`` with only the left
    siblings (the old tree's root in a consistency proof) and ``sr`` with all of them
    (the tree's root). ``ProofError`` when the path has the wrong length."""
    fr = sr = start
    for p in path:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(p, fr), node_hash(p, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return fr, sr


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2); ``ProofError`` if the
    proof has the wrong shape for that index and size."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is beyond the tree size {size}")
    return _climb(index, size - 1, leaf, proof)[1]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    if root_from_inclusion(index, size, leaf, proof) != expected_root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new`` leaves extends the one of ``old`` (RFC 9162
    §2.1.4.2); ``ProofError`` otherwise."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency between sizes {old} and {new}")
    if old == new:
        if proof or old_root != new_root:
            raise ProofError("one size, two roots (or a needless proof): the log was rewritten")
        return
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr, sr = _climb(fn, sn, path[0], path[1:])
    if fr != old_root:
        raise ProofError(f"the tree of size {new} does not contain the old tree of {old}")
    if sr != new_root:
        raise ProofError(f"the proof does not lead to the root of size {new}")
