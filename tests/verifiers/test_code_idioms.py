"""Agreement suite: accepted-style solutions written with the idioms competitive programmers use
(3-argument `pow`, `exit()` / `quit()`, deep recursion, `input = sys.stdin.readline`,
`print(*xs)`, `from math import *`, numpy, ...). Every case must score 1.0, so a change of the
harness prelude cannot silently break them; and the verdict's reason says why an answer failed.
"""

import collections
import json
import pathlib
import sys
import textwrap

import pytest

from prime_jax.verifiers import code

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import pool_helpers  # noqa: E402

requires_sandbox = pytest.mark.skipif(bool(pool_helpers.sandbox_missing()),
                                      reason=pool_helpers.sandbox_missing())
M = 1_000_000_007

# (idiom, solution, inputs, outputs, fn_name)
CASES = [
    ("pow3", "a, b, m = map(int, input().split())\nprint(pow(a, b, m))",
     ["2 10 1000", "3 200 1000000007"], ["24", str(pow(3, 200, M))], None),
    ("pow3", "a, m = map(int, input().split())\nprint(pow(a, -1, m))", ["3 7"], ["5"], None),
    ("pow3", """
     import sys
     def main():
         n = int(sys.stdin.readline())
         print(sum(pow(i, n, 10**9 + 7) for i in range(1, n + 1)) % (10**9 + 7))
     main()""", ["5"], [str(sum(pow(i, 5, M) for i in range(1, 6)) % M)], None),
    ("pow3", """
     class Solution:
         def countGoodNumbers(self, n: int) -> int:
             return pow(5, (n + 1) // 2, 10**9 + 7) * pow(4, n // 2, 10**9 + 7) % (10**9 + 7)""",
     [[1], [4], [50]], [5, 400, 564908303], "countGoodNumbers"),
    ("exit", "n = int(input())\nif n == 0:\n    print('NO')\n    exit()\nprint('YES')",
     ["0", "3"], ["NO", "YES"], None),
    ("exit", "n = int(input())\nif n < 0:\n    print(-1)\n    quit()\nprint(n * n)",
     ["-2", "4"], ["-1", "16"], None),
    ("exit", "import sys\nprint(int(input()) + 1)\nsys.exit(0)", ["41"], ["42"], None),
    ("exit", "print(int(input()) * 2)\nexit(0)", ["21"], ["42"], None),
    ("recursion", """
     import sys
     sys.setrecursionlimit(300000)
     input = sys.stdin.readline
     n = int(input())
     children = [[] for _ in range(n + 1)]
     for _ in range(n - 1):
         u, v = map(int, input().split())
         children[u].append(v)
     def depth(u):
         best = 0
         for v in children[u]:
             best = max(best, depth(v))
         return best + 1
     print(depth(1))""",
     ["100000\n" + "\n".join(f"{i} {i + 1}" for i in range(1, 100000)), "3\n1 2\n1 3"],
     ["100000", "2"], None),
    ("recursion", """
     import sys, threading
     sys.setrecursionlimit(1 << 25)
     threading.stack_size(1 << 27)
     def main():
         n = int(input())
         def f(k):
             return 0 if k == 0 else f(k - 1) + k
         print(f(n))
     t = threading.Thread(target=main)
     t.start()
     t.join()""", ["60000"], [str(60000 * 60001 // 2)], None),
    ("recursion", """
     from functools import lru_cache
     import sys
     sys.setrecursionlimit(10**6)
     @lru_cache(maxsize=None)
     def fib(n):
         return n if n < 2 else (fib(n - 1) + fib(n - 2)) % 1000000007
     print(fib(int(input())))""", ["20000"], [None], None),
    ("readline", """
     import sys
     input = sys.stdin.readline
     t = int(input())
     for _ in range(t):
         a, b = map(int, input().split())
         print(a + b)""", ["3\n1 2\n3 4\n5 6"], ["3\n7\n11"], None),
    ("readline", """
     import sys
     data = sys.stdin.buffer.read().split()
     n = int(data[0])
     print(sum(map(int, data[1:n + 1])))""", ["4\n1 2 3 4"], ["10"], None),
    ("print_star", "n = int(input())\nprint(*range(1, n + 1))", ["5"], ["1 2 3 4 5"], None),
    ("print_star", "xs = list(map(int, input().split()))\nprint(*sorted(xs), sep='\\n')",
     ["3 1 2"], ["1\n2\n3"], None),
    ("print_star", "import sys\nsys.stdout.write('\\n'.join(map(str, range(3))) + '\\n')",
     [""], ["0\n1\n2"], None),
    ("math_star", """
     from math import *
     a, b = map(int, input().split())
     print(gcd(a, b), isqrt(a * b), ceil(a / b), floor(sqrt(a)))""",
     ["12 18"], ["6 14 1 3"], None),
    ("math_star", "from math import *\nprint(factorial(int(input())) % 1000)", ["10"], ["800"],
     None),
    ("prelude_names", "print(gcd(*map(int, input().split())), comb(5, 2))", ["12 18"],
     ["6 10"], None),
    ("prelude_names", """
     class Solution:
         def topKFrequent(self, nums: List[int], k: int) -> List[int]:
             return [x for x, _ in Counter(nums).most_common(k)]""",
     [[[1, 1, 1, 2, 2, 3], 2]], [[1, 2]], "topKFrequent"),
    ("numpy", """
     import numpy as np
     a = np.array(list(map(int, input().split())), dtype=np.int64)
     print(int(a.sum()), int(np.cumsum(a).max()), int(np.dot(a, a)))""",
     ["1 2 3 4"], ["10 10 30"], None),
    ("numpy", """
     import numpy as np
     n = int(input())
     m = np.array([[1, 1], [1, 0]], dtype=object)
     r = np.linalg.matrix_power(m, n)
     print(r[0][1])""", ["30"], ["832040"], None),
    ("main_guard", """
     import sys
     from collections import deque
     def main():
         n, m = map(int, sys.stdin.readline().split())
         graph = [[] for _ in range(n)]
         for _ in range(m):
             u, v = map(int, sys.stdin.readline().split())
             graph[u].append(v)
             graph[v].append(u)
         dist = [-1] * n
         dist[0] = 0
         queue = deque([0])
         while queue:
             u = queue.popleft()
             for v in graph[u]:
                 if dist[v] < 0:
                     dist[v] = dist[u] + 1
                     queue.append(v)
         print(*dist)
     if __name__ == '__main__':
         main()""", ["4 3\n0 1\n1 2\n0 3"], ["0 1 2 1"], None),
]


def _fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, (a + b) % 1_000_000_007
    return a


def rows():
    for idiom, source, inputs, outputs, fn_name in CASES:
        outputs = [str(_fib(20000)) if value is None else value for value in outputs]
        tests = {"inputs": inputs, "outputs": outputs, **({"fn_name": fn_name} if fn_name else {})}
        yield idiom, f"```python\n{textwrap.dedent(source).strip()}\n```", json.dumps(tests)


def test_the_suite_covers_every_idiom():
    counts = collections.Counter(idiom for idiom, *_ in CASES)
    assert set(counts) == {"pow3", "exit", "recursion", "readline", "print_star", "math_star",
                           "prelude_names", "numpy", "main_guard"}
    assert len(CASES) >= 20


@requires_sandbox
@pytest.mark.parametrize("case", list(rows()), ids=lambda case: case[0])
def test_accepted_idiom_scores_one(case):
    _, response, tests = case
    verdict = code.verify_detailed(response, tests, timeout=10.0)
    assert verdict.score == 1.0, verdict


@requires_sandbox
def test_reason_names_the_first_failing_tests_error():
    response = "```python\nx = int(input())\nif x > 1:\n    raise ValueError(f'bad {x}')\n" \
               "print(x)\n```"
    verdict = code.verify_detailed(response, json.dumps({"inputs": ["1", "5"],
                                                         "outputs": ["1", "SECRET"]}))
    assert verdict.score == 0.5
    assert "test 1" in verdict.reason and "ValueError: bad 5" in verdict.reason, verdict
    assert "SECRET" not in verdict.reason


@requires_sandbox
def test_reason_of_a_wrong_answer_never_shows_the_expected_output():
    verdict = code.verify_detailed("```python\nprint('guess')\n```",
                                   json.dumps({"inputs": [""], "outputs": ["SECRET"]}))
    assert verdict.score == 0.0 and "wrong answer" in verdict.reason, verdict
    assert "SECRET" not in verdict.reason
