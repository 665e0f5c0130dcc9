/* dir-hash.c: a small string-keyed hash table with separate chaining for the
 * directory's domains, users and aliases (O(1) lookups at 100,000 users).
 * Keys belong to the stored values; the table only points at them. */
#include "cluster/dir-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dir_hash_node {
	struct dir_hash_node *next;
	const char *key;
	void *value;
	uint32_t hash;
};

struct dir_hash {
	struct dir_hash_node **buckets;
	size_t size;      /* power of two */
	unsigned count;
};

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

struct dir_hash *dir_hash_new(void)
{
	struct dir_hash *hash = mf_calloc(1, sizeof(*hash));

	hash->size = 64;
	hash->buckets = mf_calloc(hash->size, sizeof(*hash->buckets));
	return hash;
}

void dir_hash_free(struct dir_hash **_hash)
{
	struct dir_hash *hash = *_hash;

	if (hash == NULL)
		return;
	for (size_t i = 0; i < hash->size; i++) {
		struct dir_hash_node *node = hash->buckets[i], *next;
		for (; node != NULL; node = next) {
			next = node->next;
			free(node);
		}
	}
	free(hash->buckets);
	free(hash);
	*_hash = NULL;
}

static struct dir_hash_node **find(const struct dir_hash *hash, const char *key, uint32_t h)
{
	struct dir_hash_node **pos = &hash->buckets[h & (hash->size - 1)];

	for (; *pos != NULL; pos = &(*pos)->next) {
		if ((*pos)->hash == h && strcmp((*pos)->key, key) == 0)
			break;
	}
	return pos;
}

void *dir_hash_get(const struct dir_hash *hash, const char *key)
{
	struct dir_hash_node **pos = find(hash, key, hash_str(key));

	return *pos == NULL ? NULL : (*pos)->value;
}

static void grow(struct dir_hash *hash)
{
	size_t new_size = hash->size * 2;
	struct dir_hash_node **buckets = mf_calloc(new_size, sizeof(*buckets));

	for (size_t i = 0; i < hash->size; i++) {
		struct dir_hash_node *node = hash->buckets[i], *next;
		for (; node != NULL; node = next) {
			next = node->next;
			node->next = buckets[node->hash & (new_size - 1)];
			buckets[node->hash & (new_size - 1)] = node;
		}
	}
	free(hash->buckets);
	hash->buckets = buckets;
	hash->size = new_size;
}

void dir_hash_put(struct dir_hash *hash, const char *key, void *value)
{
	uint32_t h = hash_str(key);
	struct dir_hash_node **pos = find(hash, key, h);
	struct dir_hash_node *node;

	if (*pos != NULL) {
		(*pos)->key = key;
		(*pos)->value = value;
		return;
	}
	node = mf_malloc(sizeof(*node));
	node->next = NULL;
	node->key = key;
	node->value = value;
	node->hash = h;
	*pos = node;
	if (++hash->count > hash->size / 4 * 3)
		grow(hash);
}

void *dir_hash_remove(struct dir_hash *hash, const char *key)
{
	struct dir_hash_node **pos = find(hash, key, hash_str(key));
	struct dir_hash_node *node = *pos;
	void *value;

	if (node == NULL)
		return NULL;
	*pos = node->next;
	value = node->value;
	free(node);
	hash->count--;
	return value;
}

unsigned dir_hash_count(const struct dir_hash *hash)
{
	return hash->count;
}

/* *iter encodes bucket index and position in the chain. */
void *dir_hash_next(const struct dir_hash *hash, size_t *iter, const char **key_r)
{
	size_t bucket = *iter >> 16, depth = *iter & 0xffff;

	for (; bucket < hash->size; bucket++, depth = 0) {
		struct dir_hash_node *node = hash->buckets[bucket];
		for (size_t i = 0; node != NULL && i < depth; i++)
			node = node->next;
		if (node != NULL) {
			*iter = (bucket << 16) | (depth + 1);
			if (key_r != NULL)
				*key_r = node->key;
			return node->value;
		}
	}
	*iter = bucket << 16;
	return NULL;
}
