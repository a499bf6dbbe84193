// Throws and never catches: std::terminate -> abort() -> SIGABRT (glibc raises it with tgkill).
#include <iostream>
#include <stdexcept>
int main() {
    long long a, b;
    std::cin >> a >> b;
    if (a + b != 0) throw std::runtime_error("not handled");
    std::cout << 0 << '\n';
}
