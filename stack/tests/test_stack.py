"""Tests of the example stack's services: run with `python3 -B -m unittest
discover -s stack/tests` (the Swift suite's ExampleStackTests runs them)."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

from meridian_stack import inference, knowledge  # noqa: E402
from meridian_stack.config import ConfigError, Faults, Release, parse_mappings  # noqa: E402

# Traffic stays on a loopback address of its own, never 127.0.0.1.
ADDRESS = "127.0.177.1"


def release(component, version="1.0.0", faults=None):
    return Release.from_json({"component": component, "version": version, "faults": faults or {}}, "release.json")


class ConfigTests(unittest.TestCase):
    def test_reads_what_the_example_templates_render(self):
        text = "# Rendered by meridian for eu-west (EU). Do not edit on the host.\nserver:\n  model: mistral-7b-instruct\n  max_tokens: 4096\n  log_level: info\nretention:\n  days: 30  # kept\n"
        self.assertEqual(parse_mappings(text), {"server": {"model": "mistral-7b-instruct", "max_tokens": 4096, "log_level": "info"}, "retention": {"days": 30}})
        self.assertEqual(parse_mappings('a: "x # y"\nb: \'it\'\'s\'\nc: true\nd: 1.5\n'), {"a": "x # y", "b": "it's", "c": True, "d": 1.5})

    def test_refuses_what_it_does_not_understand_with_the_line(self):
        cases = {
            "a:\n  - 1\n": "f.yaml:2: only mappings of plain values",
            "a: 1\n   b: 2\n": "f.yaml:2: this line's indentation",
            "a: 1\na: 2\n": "f.yaml:2: a is set twice",
            "just text\n": "f.yaml:1: expected `key: value`",
            "a:\n\tb: 1\n": "f.yaml:2: indent with spaces",
        }
        for text, message in cases.items():
            with self.assertRaises(ConfigError) as caught:
                parse_mappings(text, "f.yaml")
            self.assertIn(message, str(caught.exception), text)

    def test_release_files_are_checked(self):
        bad = [
            ({"component": "inference"}, "component and version must be strings"),
            ({"component": "inference", "version": "1", "faults": {"error_rate": 2}}, "faults.error_rate"),
            ({"component": "inference", "version": "1", "faults": {"added_latency": "soon"}}, "faults.added_latency"),
            ({"component": "inference", "version": "1", "extra": 1}, "unknown field extra"),
        ]
        for data, message in bad:
            with self.assertRaises(ConfigError) as caught:
                Release.from_json(data, "r.json")
            self.assertIn(message, str(caught.exception))
        chosen = release("inference", faults={"error_rate": 0.05, "added_latency": "300ms"})
        self.assertEqual((chosen.faults.error_rate, chosen.faults.added_latency), (0.05, 0.3))

    def test_a_share_of_errors_is_exact_and_starts_late(self):
        faults = Faults(error_rate=0.05)
        failed = [n for n in range(1, 1001) if faults.fails(n)]
        self.assertEqual(len(failed), 50)
        self.assertEqual(failed[:2], [20, 40])
        self.assertEqual(sum(Faults(error_rate=0.013).fails(n) for n in range(1, 1001)), 13)
        self.assertFalse(any(Faults().fails(n) for n in range(1, 100)))

    def test_every_release_in_the_repository_is_valid(self):
        root = os.path.join(REPOSITORY, "artifacts")
        seen = {}
        for component in sorted(os.listdir(root)):
            for version in sorted(os.listdir(os.path.join(root, component))):
                found = Release.read(os.path.join(root, component, version, "release.json"))
                self.assertEqual((found.component, found.version), (component, version))
                seen.setdefault(component, []).append(found.faults.any)
        for component, faulty in seen.items():
            self.assertGreaterEqual(faulty.count(False), 2, f"{component} needs two good releases")
            self.assertGreaterEqual(faulty.count(True), 1, f"{component} needs a misbehaving release")


def json_of(reply):
    data, kind = reply.body()
    return json.loads(data) if kind == "application/json" else data.decode()


class InferenceTests(unittest.TestCase):
    def setUp(self):
        self.service = inference.build("", release("inference", "2.3.1"), {"server": {"model": "m", "max_tokens": 32}}, "blue")

    def complete(self, body):
        reply = self.service.handle("POST", "/v1/completions", json.dumps(body).encode())
        return reply.status, json_of(reply)

    def test_completions_are_deterministic_and_bounded(self):
        status, first = self.complete({"prompt": "The gateway sends", "max_tokens": 12})
        self.assertEqual(status, 200)
        self.assertEqual(first, self.complete({"prompt": "The gateway sends", "max_tokens": 12})[1])
        choice = first["choices"][0]
        self.assertLessEqual(first["usage"]["completion_tokens"], 12)
        self.assertIn(choice["finish_reason"], ("stop", "length"))
        self.assertTrue(choice["text"].strip())
        other = self.complete({"prompt": "A release that fails", "max_tokens": 12})[1]
        self.assertNotEqual(first["choices"][0]["text"], other["choices"][0]["text"])
        self.assertEqual(self.complete({"prompt": "the slot", "max_tokens": 3})[1]["choices"][0]["finish_reason"], "length")

    def test_bad_requests_are_refused_with_a_reason(self):
        self.assertEqual(self.complete({"prompt": ""})[0], 400)
        self.assertEqual(self.complete({"prompt": "x", "max_tokens": 33})[0], 400)
        self.assertEqual(self.complete({"prompt": "x", "model": "other"})[0], 404)
        self.assertEqual(self.service.handle("POST", "/v1/completions", b"{").status, 400)
        self.assertEqual(self.service.handle("GET", "/v1/completions", None).status, 405)
        self.assertEqual(self.service.handle("GET", "/nowhere", None).status, 404)

    def test_models_are_listed_as_the_smoke_probe_expects(self):
        reply = self.service.handle("GET", "/v1/models", None)
        self.assertEqual(reply.status, 200)
        self.assertIn('"object":"list"', reply.body()[0].decode())
        self.assertEqual(json_of(reply)["data"][0]["id"], "m")


class KnowledgeTests(unittest.TestCase):
    def setUp(self):
        self.service = knowledge.build("", release("knowledge-base"), {"search": {"max_results": 4}}, "green")

    def search(self, target):
        reply = self.service.handle("GET", target, None)
        return reply.status, json_of(reply)

    def test_search_ranks_the_matching_document_first(self):
        status, found = self.search("/kb/search?q=canary+steps")
        self.assertEqual(status, 200)
        self.assertEqual(found["results"][0]["id"], "canary-rollouts")
        scores = [r["score"] for r in found["results"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertLessEqual(len(found["results"]), 4)
        self.assertEqual(self.search("/kb/search?q=secrets")[1]["results"][0]["id"], "secrets")
        self.assertEqual(self.search("/kb/search?q=zebra")[1], {"query": "zebra", "total": 0, "results": []})

    def test_bm25_weighs_rare_terms_and_saturates_repetition(self):
        index = knowledge.Index([
            {"id": "a", "title": "", "text": "gateway gateway gateway gateway slot"},
            {"id": "b", "title": "", "text": "gateway residency"},
            {"id": "c", "title": "", "text": "gateway slot"},
        ])
        self.assertGreater(index.idf("residency"), index.idf("slot"))
        self.assertGreater(index.idf("slot"), index.idf("gateway"))
        total, ranked = index.search("residency gateway", 3)
        self.assertEqual((total, ranked[0][1]["id"]), (3, "b"))
        one = index.search("gateway", 3)[1]
        # Four times the term is worth less than four times once: k1 saturates it.
        self.assertLess(one[0][0], 4 * index.idf("gateway"))

    def test_bad_queries_are_refused(self):
        self.assertEqual(self.search("/kb/search")[0], 400)
        self.assertEqual(self.search("/kb/search?q=x&limit=5")[0], 400)
        self.assertEqual(self.search("/kb/search?q=x&limit=2")[0], 200)


class FaultTests(unittest.TestCase):
    def test_faults_fail_work_requests_but_never_health_and_add_latency(self):
        slept = []
        service = inference.build("", release("inference", "2.5.0", {"error_rate": 0.05, "added_latency": "300ms"}), {}, "green", sleep=slept.append)
        statuses = [service.handle("POST", "/v1/completions", b'{"prompt": "a slot"}').status for _ in range(40)]
        self.assertEqual([i + 1 for i, s in enumerate(statuses) if s == 500], [20, 40])
        self.assertEqual(slept, [0.3] * 40)
        health = service.handle("GET", "/healthz", None)
        self.assertEqual((health.status, len(slept)), (200, 40))
        self.assertEqual(service.headers()["X-Meridian-Version"], "2.5.0")
        self.assertEqual(service.headers()["X-Meridian-Slot"], "green")


def free_port():
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


class ProcessTests(unittest.TestCase):
    """The real entry point of a release folder, as meridian starts it on a host."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="meridian-stack-")
        self.processes = []

    def tearDown(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self, component, version, config):
        folder = os.path.join(self.root, "config", component)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "server.yaml"), "w") as handle:
            handle.write(config)
        port = free_port()
        serve = os.path.join(REPOSITORY, "artifacts", component, version, "bin", "serve")
        process = subprocess.Popen([serve, "--address", ADDRESS, "--port", str(port), "--slot", "blue", "--root", self.root],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.processes.append(process)
        return process, port

    def request(self, port, method, path, body=None):
        connection = http.client.HTTPConnection(ADDRESS, port, timeout=10)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def wait_until_serving(self, process, port):
        for _ in range(300):
            if process.poll() is not None:
                self.fail(f"the service exited with {process.returncode}: {process.stderr.read()}")
            try:
                return self.request(port, "GET", "/healthz")
            except OSError:
                time.sleep(0.1)
        self.fail("the service did not answer /healthz within 300 tries")

    def test_a_release_serves_on_its_address_and_stops_on_term(self):
        process, port = self.start("inference", "2.4.0", "server:\n  model: tiny\n  max_tokens: 8\n  log_level: debug\n")
        status, headers, body = self.wait_until_serving(process, port)
        self.assertEqual((status, headers["X-Meridian-Version"], headers["X-Meridian-Slot"]), (200, "2.4.0", "blue"))
        self.assertEqual(body, b"ok inference 2.4.0 blue\n")
        status, _, body = self.request(port, "POST", "/v1/completions", json.dumps({"prompt": "the gateway", "max_tokens": 8}))
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["model"], "tiny")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)
        self.assertIn("debug inference 2.4.0 blue: POST /v1/completions 200", process.stderr.read())

    def test_a_bad_config_stops_the_start_with_its_place(self):
        process, _ = self.start("knowledge-base", "1.8.0", "search:\n  max_results: many\n")
        self.assertEqual(process.wait(timeout=30), 2)
        self.assertIn("config/knowledge-base/server.yaml: search.max_results: expected an integer", process.stderr.read())


if __name__ == "__main__":
    unittest.main()
