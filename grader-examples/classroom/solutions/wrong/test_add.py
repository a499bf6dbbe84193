import unittest

from add import add


class TestAdd(unittest.TestCase):
    def test_small(self):
        self.assertEqual(add(2, 3), 5)

    def test_large(self):
        self.assertEqual(add(10**12, 1), 10**12 + 1)
