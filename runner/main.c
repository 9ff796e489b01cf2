/* PLACEHOLDER main */
#include "mp.h"
int main(void) { return 0; }
