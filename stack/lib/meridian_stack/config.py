"""Reading what a slot process is given: the release's own file (release.json,
shipped in the release folder) and the region's configuration that meridian
renders from the fleet's templates (config/<component>/server.yaml).

The rendered files are YAML, and the standard library has no YAML reader, so
this module reads the small subset the example templates produce: nested block
mappings of scalars, comments and blank lines. Anything else is refused with
the file and line, never guessed at."""

import json
import re


class ConfigError(Exception):
    """A configuration file that cannot be used, with its place."""


def parse_scalar(text):
    """A YAML scalar as the templates write them: a quoted string, an integer,
    a number, a boolean, null, or plain text."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        if text[0] == '"':
            return json.loads(text)
        return text[1:-1].replace("''", "'")
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "~", ""):
        return None
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text):
        return float(text)
    return text


def strip_comment(line):
    """The line without a trailing `# comment` outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def parse_mappings(text, name="<text>"):
    """Nested block mappings of scalars, as a dict of dicts."""
    root = {}
    # (indent of its keys, mapping), from the outermost open mapping inwards.
    stack = [(0, root)]
    opened = None  # (indent, mapping, key) after a `key:` line with no value
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).rstrip()
        if not line.strip():
            continue
        margin = line[: len(line) - len(line.lstrip())]
        if "\t" in margin:
            raise ConfigError(f"{name}:{number}: indent with spaces, not tabs")
        indent = len(margin)
        body = line.strip()
        if body.startswith(("-", "[", "{", "|", ">", "&", "*", "!")):
            raise ConfigError(f"{name}:{number}: only mappings of plain values are understood here, got \"{body}\"")
        if opened is not None:
            parent_indent, parent, key = opened
            opened = None
            if indent > parent_indent:
                parent[key] = {}
                stack.append((indent, parent[key]))
        while indent < stack[-1][0]:
            stack.pop()
        if indent != stack[-1][0]:
            raise ConfigError(f"{name}:{number}: this line's indentation matches no mapping above it")
        mapping = stack[-1][1]
        key, colon, value = body.partition(":")
        key = key.strip()
        if not colon or not key or (value and not value.startswith(" ")):
            raise ConfigError(f"{name}:{number}: expected `key: value`, got \"{body}\"")
        if key in mapping:
            raise ConfigError(f"{name}:{number}: {key} is set twice")
        value = value.strip()
        mapping[key] = parse_scalar(value) if value else None
        if not value:
            opened = (indent, mapping, key)
    return root


def read_mappings(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_mappings(handle.read(), path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None


def parse_duration(value, where):
    """Seconds from `300ms`, `1.5s`, `2m` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration such as 300ms or 2s, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)", str(value).strip())
        if not match:
            raise ConfigError(f"{where}: expected a duration such as 300ms or 2s, got {value!r}")
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]
    if seconds < 0 or seconds > 60:
        raise ConfigError(f"{where}: expected a duration between 0 and 60 s, got {value!r}")
    return seconds


def lookup(mapping, dotted, default, kind, where):
    """The value at `a.b` in nested mappings, checked to be of `kind`."""
    value = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return default
        value = value[part]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {dotted}: expected an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        value = str(value)
    return value


def bounded(mapping, dotted, default, low, high, where):
    """An integer setting at `a.b`, from `low` to `high`."""
    value = lookup(mapping, dotted, default, int, where)
    if not low <= value <= high:
        raise ConfigError(f"{where}: {dotted}: expected an integer from {low} to {high}, got {value}")
    return value


class Faults:
    """The misbehaviour a release is built with: a share of requests answered
    with HTTP 500, and latency added to every request. Which requests fail is
    decided by a counter, not by chance, so a 5 % release fails exactly one
    request in twenty, the twentieth first."""

    def __init__(self, error_rate=0.0, added_latency=0.0):
        self.error_rate = error_rate
        self.added_latency = added_latency

    def fails(self, count):
        """Whether the `count`-th request (1-based) is one of the failed share."""
        return int(count * self.error_rate) > int((count - 1) * self.error_rate)

    @property
    def any(self):
        return self.error_rate > 0 or self.added_latency > 0


class Release:
    """The release's own description, read from release.json in its folder."""

    def __init__(self, component, version, faults):
        self.component = component
        self.version = version
        self.faults = faults

    @classmethod
    def from_json(cls, data, where):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        unknown = set(data) - {"component", "version", "faults", "description"}
        if unknown:
            raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]}: expected component, version, faults, description")
        component, version = data.get("component"), data.get("version")
        if not isinstance(component, str) or not isinstance(version, str) or not version:
            raise ConfigError(f"{where}: component and version must be strings")
        faults = data.get("faults") or {}
        if not isinstance(faults, dict) or set(faults) - {"error_rate", "added_latency"}:
            raise ConfigError(f"{where}: faults holds error_rate (0 to 1) and added_latency (e.g. 300ms)")
        rate = faults.get("error_rate", 0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ConfigError(f"{where}: faults.error_rate: expected a number from 0 to 1, got {rate!r}")
        latency = parse_duration(faults.get("added_latency", 0), f"{where}: faults.added_latency")
        return cls(component, version, Faults(float(rate), latency))

    @classmethod
    def read(cls, path):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as error:
            raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
        except ValueError as error:
            raise ConfigError(f"{path}: not valid JSON: {error}") from None
        return cls.from_json(data, path)
