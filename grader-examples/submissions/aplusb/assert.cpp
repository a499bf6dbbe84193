// A failed assert: the message on stderr, then abort() -> SIGABRT.
#include <cassert>
#include <iostream>
int main() {
    long long a, b;
    std::cin >> a >> b;
    assert(a >= 0 && b >= 0);     // test 2 has a negative a
    std::cout << a + b << '\n';
}
