"""Template mining in the manner of Drain (He et al., ICWS 2017): messages with the same constant words
share a template, the variable words become `<*>`.

Written here rather than taken from drain3 for a hard bound on memory that never forgets a template: past
`max_clusters` a message that fits no template gets none, where drain3 would evict a template whose id
records already carry (and whose final text the dataset writer still needs). With an exact cache in front
of the tree it is also faster than drain3 on the same lines (see benchmarks/bench_ingest.py).
"""

from __future__ import annotations

import re

WILDCARD = "<*>"
# Words with a digit are variables before any mining (numbers, hex, IPs, ids, UUIDs, durations, sizes, and
# the masking placeholders, which all contain one): the usual Drain preprocessing. Mapping every digit to 0
# first (in C) makes the test per word a plain substring test.
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
# So are paths, URLs and e-mail addresses without a digit (`/var/lib/app`, `https://shop.example.com/`):
# tested only on words with a `/`, `\` or `@` in them.
_PATH_LIKE = re.compile(r"""[("'\[<]*(?:[A-Za-z]:\\|\.{0,2}/|~/|\w+://)|[^@\s]+@[^@\s]+\.\w""")


class _Cluster:
    __slots__ = ("id", "tokens", "size")

    def __init__(self, cid: int, tokens: list[str]):
        self.id = cid
        self.tokens = tokens
        self.size = 0


class TemplateMiner:
    """Streaming Drain. `add(message)` returns the message's template id (1, 2, ...) or None; `template(id)`
    is the template as it stands now (templates only get more general as messages arrive, so the final
    text is read at the end)."""

    def __init__(
        self,
        depth: int = 4,
        similarity: float = 0.4,
        max_children: int = 100,
        max_clusters: int = 20_000,
        max_tokens: int = 64,
        max_cache: int = 20_000,
    ):
        self.similarity = similarity
        self.max_children = max_children
        self.max_clusters = max_clusters
        self.max_tokens = max_tokens
        self._prefix_depth = max(depth - 2, 1)
        self._root: dict[int, dict] = {}
        self.clusters: list[_Cluster] = []
        self.unassigned = 0  # messages that found no template because the table was full
        # Exact preprocessed message → cluster: most log lines repeat a shape already seen, and a shape
        # that fitted a template once fits it forever (templates only generalise).
        self._cache: dict[str, _Cluster] = {}
        self._max_cache = max_cache

    @property
    def capped(self) -> bool:
        return len(self.clusters) >= self.max_clusters

    def template(self, template_id: int) -> str:
        return " ".join(self.clusters[template_id - 1].tokens)

    def add(self, message: str) -> int | None:
        first_line = message.partition("\n")[0][: 16 * self.max_tokens].translate(_DIGITS_TO_ZERO)
        # Inline rather than a function per word: this line is most of the miner's time.
        tokens = [
            WILDCARD if "0" in t or (("/" in t or "\\" in t or "@" in t) and _PATH_LIKE.match(t)) else t
            for t in first_line.split()
        ]
        if not tokens:
            return None
        key = " ".join(tokens)
        cluster = self._cache.get(key)
        if cluster is None:
            if len(tokens) > self.max_tokens:
                tokens = tokens[: self.max_tokens - 1] + [WILDCARD]
            cluster = self._match(tokens)
            if cluster is None:
                self.unassigned += 1
                return None
            if len(self._cache) >= self._max_cache:
                self._cache.clear()
            self._cache[key] = cluster
        cluster.size += 1
        return cluster.id

    def merge_variants(self, min_variants: int = 3) -> dict[int, int]:
        """Joins the templates that differ at one word only, where that word took `min_variants` values or
        more (or a variable) and at least two other words are constant: a value without a digit among a
        message's first words (`User alice logged in`) sends each value down its own branch of Drain's tree.
        Two values are not enough (`Worker <*> started` and `… stopped` stay apart). Returns every template
        id's final id: the templates left are numbered from 1 again, in order of first appearance. Call it
        once, after the last `add`."""
        parent = {c.id: c for c in self.clusters}
        merged = True
        while merged:
            merged = False
            live = [c for c in self.clusters if parent[c.id] is c]
            by_length: dict[int, list[_Cluster]] = {}
            for c in live:
                by_length.setdefault(len(c.tokens), []).append(c)
            for group in by_length.values():
                for p in range(len(group[0].tokens) if len(group) > 1 else 0):
                    merged |= self._merge_at(group, p, min_variants, parent)
        for c in self.clusters:
            root = c
            while parent[root.id] is not root:
                root = parent[root.id]
            parent[c.id] = root
        survivors = [c for c in self.clusters if parent[c.id] is c]
        old_ids = {c.id: c for c in self.clusters}
        for new_id, c in enumerate(survivors, start=1):
            c.id = new_id
        self.clusters = survivors
        return {old: parent[old].id for old in old_ids}

    @staticmethod
    def _merge_at(group: list[_Cluster], p: int, min_variants: int, parent: dict[int, _Cluster]) -> bool:
        buckets: dict[tuple[str, ...], list[_Cluster]] = {}
        for c in group:
            if parent[c.id] is c:
                buckets.setdefault((*c.tokens[:p], *c.tokens[p + 1 :]), []).append(c)
        merged = False
        for rest, members in buckets.items():
            words = {c.tokens[p] for c in members}
            enough = len(words) >= min_variants or (WILDCARD in words and len(members) > 1)
            if not enough or sum(t != WILDCARD for t in rest) < 2:
                continue
            root = min(members, key=lambda c: c.id)
            root.tokens = [*rest[:p], WILDCARD, *rest[p:]]
            for c in members:
                if c is not root:
                    parent[c.id] = root
                    root.size += c.size
            merged = True
        return merged

    def _leaf(self, tokens: list[str]) -> list[_Cluster] | None:
        """The tree's leaf for `tokens`: by length, then by the first words. Once the table is full the
        tree only gets looked up, so it stops growing too."""
        grow = not self.capped
        node = self._root.get(len(tokens))
        if node is None:
            if not grow:
                return None
            node = self._root[len(tokens)] = {}
        for token in tokens[: self._prefix_depth]:
            child = node.get(token)
            if child is None and token != WILDCARD and len(node) >= self.max_children:
                token = WILDCARD  # a node with too many children sends new words to its wildcard child
                child = node.get(token)
            if child is None:
                if not grow:
                    return None
                child = node[token] = {}
            node = child
        return node.setdefault(None, [])

    def _match(self, tokens: list[str]) -> _Cluster | None:
        leaf = self._leaf(tokens)
        if leaf is None:
            return None
        best, best_sim, best_params = None, -1.0, -1
        for cluster in leaf:
            same = params = 0
            for t, u in zip(cluster.tokens, tokens, strict=True):
                if t == WILDCARD:
                    params += 1
                elif t == u:
                    same += 1
            sim = same / len(tokens)
            if sim > best_sim or (sim == best_sim and params > best_params):
                best, best_sim, best_params = cluster, sim, params
        if best is not None and best_sim >= self.similarity:
            best.tokens = [t if t == u else WILDCARD for t, u in zip(best.tokens, tokens, strict=True)]
            return best
        if self.capped:
            return None
        cluster = _Cluster(len(self.clusters) + 1, tokens)
        self.clusters.append(cluster)
        leaf.append(cluster)
        return cluster
