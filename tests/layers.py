#!/usr/bin/env python3
"""No import circles in src/: each module uses only modules "below" it.

Reads every .rs file under src/ (test code after `#[cfg(test)]` excluded),
collects the crate modules it names (`crate::x`, `crate::{x, y}`, and for the
binary `dockwatch::x`), and checks the graph of top-level modules has no
cycle; inside a folder module (src/docker/, src/metrics/, ...) the files must
not form a circle either (`super::x` and `self::x` count). Prints the modules
in an order where each uses only modules after it, or the circle it found.
Also: no per-daemon task in src/tasks/ names another task; what tasks share
lives in the helper files listed in TASK_HELPERS.
Exit 0 if there is none, 1 if there is one.
"""
import os
import re
import sys

# src/tasks/ files that are not tasks but what tasks share.
TASK_HELPERS = {"mod", "failure", "image_events", "schedule"}

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def code_of(path):
    text = open(path, encoding="utf-8").read()
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def names_in(text, prefix):
    refs = set(re.findall(prefix + r"::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(prefix + r"::\{([^}]*)\}", text, re.S):
        refs.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    return refs


def find_cycle(graph):
    state, stack = {}, []

    def dfs(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if state.get(v) is None:
                c = dfs(v)
                if c:
                    return c
        state[u] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if state.get(m) is None:
            c = dfs(m)
            if c:
                return c
    return None


def order(graph):
    """Modules from the top (uses the most) to the bottom (a leaf)."""
    done, out = set(), []

    def visit(u):
        if u in done:
            return
        done.add(u)
        for v in sorted(graph[u]):
            visit(v)
        out.append(u)

    for m in sorted(graph):
        visit(m)
    return list(reversed(out))


def main():
    top, folders, task_refs = {}, {}, {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, SRC).split(os.sep)
            module = rel[0].removesuffix(".rs")
            if module in ("lib", "main"):
                continue
            text = code_of(path)
            refs = names_in(text, "crate")
            top.setdefault(module, set()).update(r for r in refs if r != module)
            if len(rel) > 1:
                inner = rel[-1].removesuffix(".rs")
                local = names_in(text, "super") | names_in(text, "self")
                folders.setdefault(module, {}).setdefault(inner, set()).update(local)
                if module == "tasks":
                    task_refs[inner] = local | names_in(text, "crate::tasks")
    graph = {m: {r for r in refs if r in top} for m, refs in top.items()}
    problems = []
    cycle = find_cycle(graph)
    if cycle:
        problems.append("src/ modules import each other in a circle: " + " -> ".join(cycle))
    for folder, files in sorted(folders.items()):
        names = set(files)
        # mod.rs declares its children; a child naming `super::x` uses x.
        g = {f: {r for r in refs if r in names and r != f} for f, refs in files.items()}
        g.pop("mod", None)
        for f in g:
            g[f].discard("mod")
        c = find_cycle(g)
        if c:
            problems.append(f"src/{folder}/ files import each other in a circle: " + " -> ".join(c))
    tasks = set(task_refs) - TASK_HELPERS
    for task in sorted(tasks):
        others = sorted((task_refs[task] & tasks) - {task})
        if others:
            problems.append(f"src/tasks/{task}.rs is a task and imports another task: {', '.join(others)}")
    if problems:
        for p in problems:
            print(p)
        return 1
    print("no import circles in src/; from the top down (each uses only modules after it):")
    print("  " + " > ".join(order(graph)))
    print(f"no task imports another (tasks: {', '.join(sorted(tasks))}; shared: {', '.join(sorted(TASK_HELPERS - {'mod'}))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
