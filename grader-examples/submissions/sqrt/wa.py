import math
print(f"{math.sqrt(float(input())):.1f}")
