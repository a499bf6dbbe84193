/* raise(SIGFPE): what an integer division by zero does, said explicitly (the
 * compiler may fold a literal one away). */
#include <signal.h>
#include <stdio.h>
int main(void) {
    long long a, b;
    if (scanf("%lld %lld", &a, &b) != 2) return 1;
    raise(SIGFPE);
    printf("%lld\n", a + b);
    return 0;
}
