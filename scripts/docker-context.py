#!/usr/bin/env python3
"""What `docker build .` would send as its build context, without a container engine.

Applies a .dockerignore the way Docker does (moby's patternmatcher: patterns are
anchored at the context root, `*` and `?` stay within one path element, `**` spans
any number of them, a pattern that matches a directory matches everything under it,
later patterns override earlier ones and `!` re-admits) and reports the number of
files and the size of the tar stream (`tar -c` of what is admitted).

    python3 scripts/docker-context.py                      # summary of ./.dockerignore
    python3 scripts/docker-context.py --dockerignore OLD   # the same tree under another file
    python3 scripts/docker-context.py --list               # every admitted file
    python3 scripts/docker-context.py --copy-to DIR        # materialise the context in DIR
"""
import argparse
import os
import re
import shutil
import sys
import tarfile


def clean(pattern):
    """filepath.Clean plus the leading-slash strip Docker applies to each pattern."""
    parts = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts) or "."


def to_regex(pattern):
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(ch)
            else:
                body = pattern[i + 1:end]
                if body.startswith("^"):
                    body = "!" + body[1:]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


class Rules:
    def __init__(self, lines):
        self.patterns = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            text = clean(line[1:].strip() if exclusion else line)
            self.patterns.append((exclusion, text, to_regex(text)))

    def excluded(self, path):
        """True if `path` (relative, '/'-separated) is left out of the context."""
        parents = path.split("/")[:-1]
        matched = False
        for exclusion, _, regex in self.patterns:
            # An ignore pattern only matters while the path is admitted, a `!` pattern
            # only while it is ignored.
            if exclusion != matched:
                continue
            hit = bool(regex.match(path)) or any(
                regex.match("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if hit:
                matched = not exclusion
        return matched

    def may_readmit_under(self, directory):
        """Whether some `!` pattern could admit a path below an ignored directory."""
        depth = directory.count("/") + 1
        for exclusion, text, _ in self.patterns:
            if not exclusion:
                continue
            parts = text.split("/")
            if "**" in parts[: depth + 1] or len(parts) > depth and all(
                to_regex(p).match(d) for p, d in zip(parts, directory.split("/"))
            ):
                return True
        return False


def admitted_files(root, rules):
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        keep = []
        for d in sorted(dirs):
            rel = rel_top + d
            if os.path.islink(os.path.join(top, d)):
                files.append(d)
            elif not rules.excluded(rel) or rules.may_readmit_under(rel):
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            rel = rel_top + f
            if not rules.excluded(rel):
                yield rel


class CountingSink:
    def __init__(self):
        self.size = 0

    def write(self, data):
        self.size += len(data)
        return len(data)


def tar_size(root, paths):
    sink = CountingSink()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    return sink.size


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--dockerignore", help="default: ROOT/.dockerignore")
    parser.add_argument("--list", action="store_true", help="print every admitted file")
    parser.add_argument("--copy-to", metavar="DIR", help="copy the admitted files to DIR")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    ignore_file = args.dockerignore or os.path.join(root, ".dockerignore")
    lines = []
    if os.path.exists(ignore_file):
        with open(ignore_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    paths = list(admitted_files(root, Rules(lines)))
    if args.list:
        print("\n".join(paths))
    if args.copy_to:
        for rel in paths:
            dest = os.path.join(args.copy_to, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), dest, follow_symlinks=False)
    size = tar_size(root, paths)
    print(f"build context ({os.path.relpath(ignore_file, root)}): {len(paths)} files, "
          f"tar -c {size} bytes ({human(size)})", file=sys.stderr if args.list else sys.stdout)


if __name__ == "__main__":
    main()
