#include <cstdio>
int main() {
    const unsigned long n = 1UL << 30;                    // 1 GiB
    volatile char *p = new char[n];                       // volatile: the compiler may not drop the writes
    for (unsigned long i = 0; i < n; i += 4096) p[i] = 1;
    std::printf("%d\n", p[n - 1]);
}
