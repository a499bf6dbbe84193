#include <stdio.h>
int main(void) {
    long lo = 1, hi = 1000000; char r[4];
    for (;;) {
        long mid = (lo + hi) / 2;
        printf("? %ld\n", mid); fflush(stdout);
        if (scanf("%3s", r) != 1) return 1;
        if (r[0] == '=') { printf("! %ld\n", mid); fflush(stdout); return 0; }
        if (r[0] == '<') hi = mid - 1; else lo = mid + 1;
    }
}
