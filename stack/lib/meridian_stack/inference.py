"""The inference service: OpenAI-shaped completions from a small word-bigram
model trained at start on the text the release ships (corpus.txt). The same
prompt and settings always give the same completion."""

import collections
import hashlib
import os
import re

from .config import ConfigError, bounded, lookup
from .service import Reply, Route, Service, error, json_body, log_level

TOKEN = re.compile(r"[a-z0-9][a-z0-9'-]*|[.,;:!?]")
PUNCTUATION = set(".,;:!?")
MAX_PROMPT = 8000


def tokenize(text):
    return TOKEN.findall(text.lower())


def detokenize(tokens):
    text = ""
    for token in tokens:
        text += token if token in PUNCTUATION else " " + token
    return text


class BigramModel:
    """Next-word counts over a corpus. Generation follows the most frequent
    successor first and, each time a word comes back, the next one in that
    order, so no fixed loop repeats while another way out exists. A sentence
    ends only after `min_words` words, unless nothing else can follow."""

    min_words = 8

    def __init__(self, text):
        tokens = tokenize(text)
        if len(tokens) < 2:
            raise ConfigError("the corpus needs at least two words")
        following = collections.defaultdict(collections.Counter)
        for current, upcoming in zip(tokens, tokens[1:]):
            following[current][upcoming] += 1
        self.successors = {
            word: [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
            for word, counts in following.items()
        }
        self.openers = self.successors.get(".", sorted(self.successors))

    @property
    def vocabulary(self):
        return len(self.successors)

    def complete(self, prompt, max_tokens):
        """(tokens, finish reason): `stop` at the end of a sentence, `length` at max_tokens."""
        known = [t for t in tokenize(prompt) if t in self.successors]
        if known:
            word = known[-1]
        else:
            digest = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16)
            word = "."
            first = self.openers[digest % len(self.openers)]
        visits = collections.Counter()
        out = []
        while len(out) < max_tokens:
            if not known and not out:
                upcoming = first
            else:
                choices = self.successors.get(word) or self.openers
                if len(out) < self.min_words:
                    choices = [c for c in choices if c != "."] or choices
                upcoming = choices[visits[word] % len(choices)]
                visits[word] += 1
            out.append(upcoming)
            if upcoming == ".":
                return out, "stop"
            word = upcoming
        return out, "length"


class Inference:
    """The service's routes over one model and the region's settings."""

    def __init__(self, release, model, settings, where):
        self.release = release
        self.model = model
        self.model_name = lookup(settings, "server.model", "example-model", str, where)
        self.max_tokens = bounded(settings, "server.max_tokens", 256, 1, 1 << 20, where)

    def routes(self):
        return {
            "/v1/models": Route({"GET": self.models}),
            "/v1/completions": Route({"POST": self.completions}),
        }

    def models(self, query, body):
        return Reply(200, {"object": "list", "data": [{
            "id": self.model_name, "object": "model", "owned_by": "meridian-example",
            "release": self.release.version, "vocabulary": self.model.vocabulary,
        }]})

    def completions(self, query, body):
        request, problem = json_body(body)
        if problem:
            return problem
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return error(400, "prompt: expected a non-empty string")
        if len(prompt) > MAX_PROMPT:
            return error(400, f"prompt: at most {MAX_PROMPT} characters")
        model = request.get("model", self.model_name)
        if model != self.model_name:
            return error(404, f"model {model!r} is not served here; GET /v1/models lists {self.model_name!r}")
        wanted = request.get("max_tokens", 16)
        if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= self.max_tokens:
            return error(400, f"max_tokens: expected an integer from 1 to {self.max_tokens}")
        tokens, reason = self.model.complete(prompt, wanted)
        identity = hashlib.sha256(f"{self.release.version}\n{self.model_name}\n{wanted}\n{prompt}".encode("utf-8")).hexdigest()[:24]
        prompt_tokens = len(tokenize(prompt))
        return Reply(200, {
            "id": "cmpl-" + identity,
            "object": "text_completion",
            "model": self.model_name,
            "choices": [{"index": 0, "text": detokenize(tokens), "finish_reason": reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)},
        })


def build(folder, release, settings, slot, **service_options):
    """The inference service of the release in `folder`, with the region's settings."""
    where = "config/inference/server.yaml"
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.txt")
    with open(corpus, encoding="utf-8") as handle:
        model = BigramModel(handle.read())
    app = Inference(release, model, settings, where)
    return Service(release, slot, settings, app.routes(), log_level=log_level(settings, where, "server.log_level"), **service_options)
