// Four threads share the work (each sums a quarter of a range, burning a little
// CPU of its own: 0.05 s by its own clock), joined before the answer.
#include <ctime>
#include <iostream>
#include <thread>
#include <vector>
static double thread_cpu() { timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
int main() {
    long long a, b;
    std::cin >> a >> b;
    std::vector<long long> part(4, 0);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; i++)
        ts.emplace_back([&part, i, a, b] {
            while (thread_cpu() < 0.05) {}
            part[i] = (i == 0 ? a : 0) + (i == 1 ? b : 0);
        });
    for (auto &t : ts) t.join();
    std::cout << part[0] + part[1] + part[2] + part[3] << '\n';
}
