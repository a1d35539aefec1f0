/* Sphere function for tests/test_command.py: sphere X Y -> prints X*X + Y*Y exactly. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    double s = 0.0;
    for (int i = 1; i < argc; i++) {
        double v = strtod(argv[i], NULL);
        s += v * v;
    }
    fprintf(stderr, "evaluated %d values\n", argc - 1);
    printf("%.17g\n", s);
    return 0;
}
