/* PLACEHOLDER main */
#include "mp.h"
volatile int mp_cancel_signal;
int main(void) { return 0; }
