import sys

secret = int(open("/box/secret").read())
for asked in range(31):
    line = sys.stdin.readline().split()
    if not line:
        print("the solution stopped before answering", file=sys.stderr)
        sys.exit(1)
    if line[0] == "!":
        ok = len(line) == 2 and line[1] == str(secret)
        print("correct" if ok else f"wrong: {line[1:]}, the number was {secret}", file=sys.stderr)
        sys.exit(0 if ok else 1)
    if line[0] != "?" or len(line) != 2 or asked == 30:
        print(f"bad or one question too many: {line}", file=sys.stderr)
        sys.exit(1)
    x = int(line[1])
    print("<" if secret < x else ">" if secret > x else "=", flush=True)
