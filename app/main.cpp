#include <cstdio>
int main() { std::puts("kvserve: under construction"); }
