"""Reading a YAML file a user wrote (profiles, seccomp policies), bounded and strict.

PyYAML's safe loader alone lets a small file do a lot of harm or mean what
nobody wrote, so this loader adds, each with an error naming the file and line:
- a size cap, checked before reading (the pure-Python parser does ~1 MB/s);
- a bound on what aliases may repeat ("billion laughs": 790 bytes that expand
  to 10^9 nodes), on nesting depth, and no alias inside its own anchor;
- duplicate keys refused (YAML says they are an error; PyYAML keeps the last);
- no implicit timestamps: `hostname: 2001-12-14` is the string it looks like;
- integers and floats of at most MAX_NUMBER_CHARS characters (a 4,000-digit
  hex integer converts, then cannot be printed; base-60 ones take quadratic time);
- every failure of the parser -- YAMLError of any kind, and the ValueError or
  RecursionError it can leak -- becomes one clear error.

PyYAML is imported only here, and only when a file is not in a cache.
"""
import os

import yaml

from .errors import ProfileError, shorten

MAX_FILE_BYTES = 1 << 20        # 1 MiB: built-in profiles are under 2 KB, the largest policy under 20 KB
MAX_ALIAS_NODES = 10_000        # nodes that aliases may repeat, in all
MAX_DEPTH = 64                  # nested collections
MAX_NUMBER_CHARS = 100

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class _Error(Exception):
    """A failure at a known place: (line, column, what)."""


class _Duplicate(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream):
        super().__init__(stream)
        self._depth, self._repeated, self._sizes, self._open = 0, 0, {}, set()

    # ---------------------------------------------------------------- composing
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{shorten(event.anchor, 40)[1:-1]} is inside the collection it names "
                                "(a recursive structure)", event.start_mark)
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._repeated += self._size(node)
                if self._repeated > MAX_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases repeat more than {MAX_ALIAS_NODES} nodes in all (an alias bomb?)",
                        event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"collections nest more than {MAX_DEPTH} deep",
                                              event.start_mark)
        anchor = event.anchor if not isinstance(event, yaml.ScalarEvent) else None
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def _size(self, node):
        """Nodes in `node` with every alias expanded, memoised per node: linear in the file."""
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.ScalarNode):
                size = 1
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(n) for n in node.value)
            else:
                size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
            self._sizes[id(node)] = size
        return size

    # ---------------------------------------------------------------- constructing
    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, IndexError, KeyError, TypeError) as e:   # !!int '', !!float z ...
            raise yaml.constructor.ConstructorError(
                None, None, f"{shorten(node.value, 60) if isinstance(node, yaml.ScalarNode) else 'this value'} "
                            f"is not a valid {node.tag.rpartition(':')[2]}: {e}", node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue                            # unhashable: PyYAML's own error follows
                if first is not key_node.start_mark:
                    raise _Duplicate(
                        None, None, f"duplicate key {shorten(key, 60)} (first at line {first.line + 1}, column "
                                    f"{first.column + 1}); YAML keys must be unique", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _bounded_number(base):
    def construct(loader, node):
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {len(node.value)} characters; at most {MAX_NUMBER_CHARS} are read",
                node.start_mark)
        return base(loader, node)
    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_number(yaml.SafeLoader.construct_yaml_int))
_Loader.add_constructor("tag:yaml.org,2002:float", _bounded_number(yaml.SafeLoader.construct_yaml_float))


def _where(path, line, column=None):
    return f"{path}:{line}" + (f":{column}" if column is not None else "")


def load(path, kind="profile"):
    """The data of the YAML file at `path` (None for an empty file); ProfileError
    naming the file and line for anything that is not a small, plain YAML document."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ProfileError(f"the {kind} is {size} bytes; at most {MAX_FILE_BYTES} are read", path,
                                   f"a {kind} is a short file of keys: split it, or drop what is not needed")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ProfileError(f"cannot read the {kind}: {e.strerror}", path,
                           "check the path and the file's permissions") from None
    if len(data) > MAX_FILE_BYTES:                      # it grew while we looked
        raise ProfileError(f"the {kind} is over {MAX_FILE_BYTES} bytes", path, f"a {kind} is a short file of keys")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"byte 0x{data[e.start]:02x} is not UTF-8", _where(path, data.count(b"\n", 0, e.start) + 1),
                           f"save the {kind} as UTF-8") from None
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        syntax = isinstance(e, (yaml.scanner.ScannerError, yaml.parser.ParserError))
        what = f"YAML syntax error: {e.problem}" if syntax else f"YAML: {e.problem}"
        if e.context and e.context_mark is not None:
            what += f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        where = _where(path, mark.line + 1, mark.column + 1) if mark else path
        raise ProfileError(what, where, "fix the YAML there" if syntax else
                           "remove one of the two, or merge them" if isinstance(e, _Duplicate) else
                           "fix the value there") from None
    except yaml.reader.ReaderError as e:                 # a control character, NUL, U+FFFE ...
        raise ProfileError(f"character U+{e.character:04X} is not allowed in YAML ({e.reason})",
                           _where(path, text.count("\n", 0, e.position) + 1),
                           "remove it, or write it as an escape in a double-quoted string (\"\\x07\")") from None
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as e:
        # what the scanner lets escape: "\U00110000" (chr() out of range), and any other slip
        mark = loader.get_mark() if loader is not None else None
        raise ProfileError(f"cannot read the YAML: {str(e)[:200]}",
                           _where(path, mark.line + 1, mark.column + 1) if mark else path,
                           "fix the value there (quote it if it is meant as text)") from None
    finally:
        if loader is not None:
            loader.dispose()
