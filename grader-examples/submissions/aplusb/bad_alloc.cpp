// Keeps a table that grows until new throws std::bad_alloc (uncaught): over the
// 256M limit long before that, so the monitor stops it first.
#include <iostream>
#include <vector>
int main() {
    long long a, b;
    std::cin >> a >> b;
    std::vector<std::vector<long long>> memo;
    for (;;) memo.emplace_back(1 << 17, a + b);
}
