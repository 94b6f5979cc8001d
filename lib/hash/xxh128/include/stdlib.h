/* Freestanding stand-in: xxh128.c defines these (XXH3 never allocates here). */
#include <stddef.h>
void *malloc(size_t);
void free(void *);
