"""The knowledge-base service: Okapi BM25 search over the documents the
release ships (documents.json), built into an inverted index at start."""

import collections
import json
import math
import os
import re

from .config import ConfigError, bounded
from .service import Reply, Route, Service, error, log_level

WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset("a an and are as at be by for from how in is it its of on or that the this to what when which with".split())
MAX_QUERY = 1000


def terms(text):
    """Lower-case words without stop words, with a plural `s` taken off."""
    out = []
    for word in WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class Index:
    """BM25 over a fixed document set: score(D, Q) = sum over the query's terms
    of idf(t) · f(t, D) · (k1 + 1) / (f(t, D) + k1 · (1 − b + b · |D| / avgdl)),
    with idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))."""

    def __init__(self, documents, k1=1.2, b=0.75):
        self.documents = documents
        self.k1 = k1
        self.b = b
        self.frequencies = []
        self.postings = collections.defaultdict(list)
        for position, document in enumerate(documents):
            counts = collections.Counter(terms(document["title"] + " " + document["text"]))
            self.frequencies.append((counts, sum(counts.values())))
            for term in counts:
                self.postings[term].append(position)
        self.average_length = sum(length for _, length in self.frequencies) / max(1, len(documents))

    def idf(self, term):
        n = len(self.postings.get(term, ()))
        return math.log(1 + (len(self.documents) - n + 0.5) / (n + 0.5))

    def search(self, query, limit):
        """(total matches, [(score, document)] best first, ties by id)."""
        scores = collections.defaultdict(float)
        for term in set(terms(query)):
            weight = self.idf(term)
            for position in self.postings.get(term, ()):
                counts, length = self.frequencies[position]
                f = counts[term]
                norm = self.k1 * (1 - self.b + self.b * length / self.average_length)
                scores[position] += weight * f * (self.k1 + 1) / (f + norm)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], self.documents[item[0]]["id"]))
        return len(ranked), [(score, self.documents[position]) for position, score in ranked[:limit]]


def read_documents(path):
    try:
        with open(path, encoding="utf-8") as handle:
            documents = json.load(handle)
    except (OSError, ValueError) as failure:
        raise ConfigError(f"{path}: cannot be read as JSON: {failure}") from None
    ids = set()
    for index, document in enumerate(documents if isinstance(documents, list) else [None]):
        if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in ("id", "title", "text")):
            raise ConfigError(f"{path}: document {index}: expected an object with string id, title and text")
        if document["id"] in ids:
            raise ConfigError(f"{path}: document {index}: id {document['id']} is used twice")
        ids.add(document["id"])
    return documents


def snippet(text, query_terms, width=160):
    """The sentence of `text` that holds most query terms, cut to `width`."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    best = max(sentences, key=lambda s: len(set(terms(s)) & query_terms), default="")
    return best if len(best) <= width else best[: width - 1] + "…"


class KnowledgeBase:
    def __init__(self, release, index, settings, where):
        self.release = release
        self.index = index
        self.max_results = bounded(settings, "search.max_results", 10, 1, 100, where)

    def routes(self):
        return {
            "/kb/search": Route({"GET": self.search}),
            "/kb/documents": Route({"GET": self.list_documents}),
        }

    def search(self, query, body):
        text = " ".join(query.get("q", []))
        if not text.strip():
            return error(400, "q: give the words to search for, e.g. /kb/search?q=canary+rollback")
        if len(text) > MAX_QUERY:
            return error(400, f"q: at most {MAX_QUERY} characters")
        limit = self.max_results
        if "limit" in query:
            given = query["limit"][-1]
            if not given.isdigit() or not 1 <= int(given) <= self.max_results:
                return error(400, f"limit: expected an integer from 1 to {self.max_results}")
            limit = int(given)
        total, ranked = self.index.search(text, limit)
        wanted = set(terms(text))
        return Reply(200, {
            "query": text,
            "total": total,
            "results": [{"id": d["id"], "title": d["title"], "score": round(score, 4), "snippet": snippet(d["text"], wanted)} for score, d in ranked],
        })

    def list_documents(self, query, body):
        return Reply(200, {"documents": [{"id": d["id"], "title": d["title"]} for d in self.index.documents]})


def build(folder, release, settings, slot, **service_options):
    """The knowledge-base service of the release in `folder`, with the region's settings."""
    where = "config/knowledge-base/server.yaml"
    documents = read_documents(os.path.join(os.path.dirname(os.path.abspath(__file__)), "documents.json"))
    app = KnowledgeBase(release, Index(documents), settings, where)
    return Service(release, slot, settings, app.routes(), log_level=log_level(settings, where), **service_options)
