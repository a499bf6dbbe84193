#include <stdio.h>
#include <math.h>
int main(void) { double x; scanf("%lf", &x); printf("%.9f\n", sqrt(x)); return 0; }
