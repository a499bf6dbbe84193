# Wrong for negative numbers, and never finishes for large ones.
def add(a, b):
    if b < 0:
        return a - b
    while a > 10**6:
        pass
    return a + b


if __name__ == "__main__":
    a, b = map(int, input().split())
    print(add(a, b))
