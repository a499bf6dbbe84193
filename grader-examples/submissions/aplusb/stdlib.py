# The standard library a contestant reaches for, deep recursion on a big thread
# stack, and stdin read in one go.
import bisect
import collections
import decimal
import fractions
import functools
import heapq
import itertools
import math
import random
import re
import sys
import threading
import time


def solve():
    a, b = map(int, re.findall(r"-?\d+", sys.stdin.read()))
    sys.setrecursionlimit(300_000)

    def add(x, n):                     # a + b by 100000 nested calls of +0
        return x if n == 0 else add(x, n - 1)
    total = add(a + b, 100_000)
    assert heapq.nsmallest(1, [total, total + 1]) == [total]
    assert bisect.bisect([total], total) == 1
    assert collections.Counter([total])[total] == 1
    assert fractions.Fraction(total, 1) == decimal.Decimal(total) == total
    assert functools.reduce(math.gcd, [total, 0]) == abs(total)
    assert list(itertools.accumulate([a, b]))[-1] == total
    random.seed(time.time())
    print(total)


threading.stack_size(256 << 20)
t = threading.Thread(target=solve)
t.start()
t.join()
