/* server.c: listening sockets, the event-loop threads, accept with the
 * node-wide and per-IP connection limits, and the hand-off of finished
 * worker jobs back to their loop (an eventfd per loop). Everything about one
 * connection lives in conn.c. */
#include "frontend/server-private.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define IP_TABLE_SIZE 4096
#define ACCEPT_BATCH 64
#define REFUSAL_LOGS_PER_SEC 10
#define SHUTDOWN_FLUSH_MS 5000

struct ip_count {
	struct ip_count *next;
	struct ip_key key;
	unsigned count;
};

struct server *server_new(const struct server_settings *set)
{
	struct server *server = mf_calloc(1, sizeof(*server));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	server->set = *set;
	if (server->set.event_threads == 0)
		server->set.event_threads = cpus > 0 ? (unsigned)cpus : 1;
	if (server->set.worker_threads == 0)
		server->set.worker_threads = 1;
	pthread_mutex_init(&server->ip_lock, NULL);
	server->ip_table = mf_calloc(IP_TABLE_SIZE, sizeof(*server->ip_table));
	return server;
}

/* ---- listeners ---- */

static int server_fail(struct server *server, const char *name, const char *what, const char **error_r)
{
	snprintf(server->error, sizeof(server->error), "%s: %s: %s", name, what, strerror(errno));
	*error_r = server->error;
	return -1;
}

/* Fills sa for a TCP listener; "*" is IPv6 any with v4-mapped addresses. */
static int tcp_sockaddr(const struct mf_listener_config *l, struct sockaddr_storage *sa,
			socklen_t *len_r, bool *dual_r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;

	memset(sa, 0, sizeof(*sa));
	*dual_r = strcmp(l->address, "*") == 0;
	if (*dual_r || inet_pton(AF_INET6, l->address, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)l->port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	if (inet_pton(AF_INET, l->address, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)l->port);
		*len_r = sizeof(*sin);
		return 0;
	}
	errno = EINVAL;
	return -1;
}

static int open_tcp(const struct mf_listener_config *l, int *fd_r)
{
	struct sockaddr_storage sa;
	socklen_t len;
	bool dual;
	int one = 1, zero = 0;

	if (tcp_sockaddr(l, &sa, &len, &dual) < 0)
		return -1;
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && dual && errno == EAFNOSUPPORT) {
		/* no IPv6 on this host: "*" means IPv4 any */
		struct sockaddr_in *sin = (struct sockaddr_in *)&sa;
		memset(&sa, 0, sizeof(sa));
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)l->port);
		len = sizeof(*sin);
		dual = false;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof(int));
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 1024) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	*fd_r = fd;
	return 0;
}

static int open_unix(const struct mf_listener_config *l, int *fd_r)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", l->path);
	/* a socket left behind by an earlier run; anything else is not ours */
	if (lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(l->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1024) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	/* like other LMTP servers: any local MTA may connect; restrict access
	 * through the permissions of the socket's directory */
	chmod(l->path, 0666);
	*fd_r = fd;
	return 0;
}

int server_listen(struct server *server, const struct mf_listener_config *l,
		  const struct proto_handler *handler, const char **error_r)
{
	struct listener *lst;
	int fd = -1;

	if (server->listener_count >= MF_LISTENERS_MAX) {
		errno = ENOSPC;
		return server_fail(server, "listeners", "too many", error_r);
	}
	lst = &server->listeners[server->listener_count];
	memset(lst, 0, sizeof(*lst));
	config_listener_describe(l, lst->name, sizeof(lst->name));
	if ((l->path != NULL ? open_unix(l, &fd) : open_tcp(l, &fd)) < 0)
		return server_fail(server, lst->name, "cannot listen", error_r);
	lst->kind = HANDLE_LISTENER;
	lst->fd = fd;
	lst->config = *l;
	lst->config.address = l->address != NULL ? mf_strdup(l->address) : NULL;
	lst->config.path = l->path != NULL ? mf_strdup(l->path) : NULL;
	lst->handler = handler;
	lst->unlink_on_free = l->path != NULL;
	server->listener_count++;
	return 0;
}

unsigned server_listener_port(struct server *server, unsigned index)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);

	if (index >= server->listener_count ||
	    getsockname(server->listeners[index].fd, (struct sockaddr *)&sa, &len) < 0)
		return 0;
	if (sa.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&sa)->sin_port);
	if (sa.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
	return 0;
}

/* ---- connection limits ---- */

static unsigned ip_hash(const struct ip_key *k)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(k->addr); i++)
		h = (h ^ k->addr[i]) * 16777619u;
	return h % IP_TABLE_SIZE;
}

static struct ip_count **ip_find(struct server *server, const struct ip_key *k)
{
	struct ip_count **p = &server->ip_table[ip_hash(k)];

	while (*p != NULL && memcmp(&(*p)->key, k, sizeof(*k)) != 0)
		p = &(*p)->next;
	return p;
}

/* Counts the connection in, or says why not. */
static const char *server_admit(struct server *server, const struct ip_key *ip)
{
	unsigned max = server->set.limits.connections_max;
	unsigned per_ip = server->set.limits.connections_per_ip;

	if (atomic_fetch_add(&server->conn_count, 1) >= max) {
		atomic_fetch_sub(&server->conn_count, 1);
		return "connections_max reached";
	}
	if (ip->family == 0)
		return NULL;
	pthread_mutex_lock(&server->ip_lock);
	struct ip_count **p = ip_find(server, ip);
	if (*p == NULL) {
		*p = mf_calloc(1, sizeof(**p));
		(*p)->key = *ip;
	}
	if (per_ip != 0 && (*p)->count >= per_ip) {
		pthread_mutex_unlock(&server->ip_lock);
		atomic_fetch_sub(&server->conn_count, 1);
		return "connections_per_ip reached";
	}
	(*p)->count++;
	pthread_mutex_unlock(&server->ip_lock);
	return NULL;
}

void server_conn_released(struct server *server, const struct ip_key *ip)
{
	atomic_fetch_sub(&server->conn_count, 1);
	if (ip->family == 0)
		return;
	pthread_mutex_lock(&server->ip_lock);
	struct ip_count **p = ip_find(server, ip);
	if (*p != NULL && --(*p)->count == 0) {
		struct ip_count *gone = *p;
		*p = gone->next;
		free(gone);
	}
	pthread_mutex_unlock(&server->ip_lock);
}

unsigned server_connection_count(struct server *server)
{
	return atomic_load(&server->conn_count);
}

bool server_loops_alive(struct server *server, unsigned max_stall_ms)
{
	uint64_t now = mf_now_ms();

	for (unsigned i = 0; i < server->loop_count; i++) {
		if (now - atomic_load(&server->loops[i].last_pass_ms) > max_stall_ms)
			return false;
	}
	return true;
}

/* ---- accept ---- */

static void peer_of(const struct sockaddr_storage *sa, char *peer, size_t size, struct ip_key *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, peer, (socklen_t)size);
		ip->family = AF_INET;
		memcpy(ip->addr, &sin->sin_addr, 4);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			/* count ::ffff:a.b.c.d as the IPv4 client it is */
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], peer, (socklen_t)size);
			ip->family = AF_INET;
			memcpy(ip->addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			inet_ntop(AF_INET6, &sin6->sin6_addr, peer, (socklen_t)size);
			ip->family = AF_INET6;
			memcpy(ip->addr, &sin6->sin6_addr, 16);
		}
	} else {
		snprintf(peer, size, "unix");
	}
}

static void log_refusal(struct loop *loop, const char *peer, struct listener *l, const char *why)
{
	if (loop->refusals_logged++ < REFUSAL_LOGS_PER_SEC)
		log_info("refused connection from %s to %s: %s", peer, l->name, why);
	else
		loop->refusals_unlogged++;
}

static void loop_listeners_ctl(struct loop *loop, int op)
{
	struct server *server = loop->server;

	for (unsigned i = 0; i < server->listener_count; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
					  .data.ptr = &server->listeners[i] };
		epoll_ctl(loop->epfd, op, server->listeners[i].fd, &ev);
	}
}

static void listener_accept(struct loop *loop, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH && !loop->stopping; i++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		char peer[INET6_ADDRSTRLEN];
		struct ip_key ip;
		int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* out of descriptors or memory: stop accepting for a second
				 * instead of spinning on a listener that stays readable */
				log_error("accept on %s: %s; pausing accept for 1 s", l->name, strerror(errno));
				loop_listeners_ctl(loop, EPOLL_CTL_DEL);
				loop->accept_paused_until_ms = mf_now_ms() + 1000;
			}
			return;
		}
		if (len == 0 || sa.ss_family == AF_UNSPEC)
			sa.ss_family = AF_UNIX;
		peer_of(&sa, peer, sizeof(peer), &ip);
		const char *why = server_admit(loop->server, &ip);
		if (why != NULL) {
			log_refusal(loop, peer, l, why);
			close(fd);
			continue;
		}
		if (sa.ss_family != AF_UNIX) {
			/* output is coalesced per loop pass already; Nagle would only
			 * hold pipelined replies back until the client's delayed ACK */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		conn_accepted(loop, fd, l, peer, &ip);
	}
}

/* ---- loops ---- */

void loop_post_done(struct loop *loop, struct conn_job *job)
{
	uint64_t one = 1;

	pthread_mutex_lock(&loop->lock);
	job->done_next = NULL;
	if (loop->done_tail != NULL)
		loop->done_tail->done_next = job;
	else
		loop->done_head = job;
	loop->done_tail = job;
	pthread_mutex_unlock(&loop->lock);
	ssize_t MF_UNUSED w = write(loop->wakefd, &one, sizeof(one));
}

static void loop_begin_stop(struct loop *loop)
{
	loop->stopping = true;
	loop->stop_started_ms = mf_now_ms();
	if (loop->accept_paused_until_ms == 0)
		loop_listeners_ctl(loop, EPOLL_CTL_DEL);
	conn_loop_close_all(loop, false);
}

static void loop_wake(struct loop *loop)
{
	uint64_t value;
	ssize_t MF_UNUSED r = read(loop->wakefd, &value, sizeof(value));

	conn_loop_done_jobs(loop);
	conn_loop_wakes(loop);
	if (atomic_load(&loop->server->stopping) && !loop->stopping)
		loop_begin_stop(loop);
}

static void loop_second(struct loop *loop, uint64_t now)
{
	atomic_store(&loop->last_pass_ms, now);
	if (loop->refusals_unlogged > 0) {
		log_info("refused %u more connections (limits)", loop->refusals_unlogged);
		loop->refusals_unlogged = 0;
	}
	loop->refusals_logged = 0;
	if (loop->accept_paused_until_ms != 0 && now >= loop->accept_paused_until_ms) {
		loop->accept_paused_until_ms = 0;
		if (!loop->stopping)
			loop_listeners_ctl(loop, EPOLL_CTL_ADD);
	}
	/* stragglers that did not flush in time are dropped */
	if (loop->stopping && now - loop->stop_started_ms > SHUTDOWN_FLUSH_MS)
		conn_loop_close_all(loop, true);
	conn_loop_tick(loop, now);
}

static void loop_dispatch(struct loop *loop, struct epoll_event *ev)
{
	enum loop_handle_kind *kind = ev->data.ptr;

	switch (*kind) {
	case HANDLE_WAKE:
		loop_wake(loop);
		break;
	case HANDLE_LISTENER:
		listener_accept(loop, (struct listener *)kind);
		break;
	case HANDLE_CONN:
		conn_handle_event((struct conn *)kind, ev->events);
		break;
	}
}

static void *loop_thread(void *arg)
{
	struct loop *loop = arg;
	struct epoll_event events[128];
	uint64_t next_tick = mf_now_ms() + 1000;

	while (!(loop->stopping && loop->conn_count == 0)) {
		uint64_t now = mf_now_ms();
		int timeout = loop->again_list != NULL ? 0 :
			(next_tick > now ? (int)(next_tick - now) : 0);
		int n = epoll_wait(loop->epfd, events, MF_N_ELEMENTS(events), timeout);

		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++)
			loop_dispatch(loop, &events[i]);
		conn_loop_run_again(loop);
		now = mf_now_ms();
		if (now >= next_tick) {
			loop_second(loop, now);
			next_tick = now + 1000;
		}
		conn_loop_reap(loop);
	}
	atomic_store(&loop->finished, true);
	return NULL;
}

static int loop_init(struct server *server, struct loop *loop, unsigned index)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = loop };

	loop->kind = HANDLE_WAKE;
	loop->server = server;
	loop->index = index;
	pthread_mutex_init(&loop->lock, NULL);
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->epfd < 0 || loop->wakefd < 0 ||
	    epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
		return -1;
	loop_listeners_ctl(loop, EPOLL_CTL_ADD);
	atomic_store(&loop->last_pass_ms, mf_now_ms());
	return 0;
}

int server_start(struct server *server, const char **error_r)
{
	/* OpenSSL writes to sockets with write(2): a peer that went away must
	 * give EPIPE, not kill the process */
	signal(SIGPIPE, SIG_IGN);
	server->workers = worker_pool_new(server->set.worker_threads);
	server->loops = mf_calloc(server->set.event_threads, sizeof(*server->loops));
	for (unsigned i = 0; i < server->set.event_threads; i++) {
		struct loop *loop = &server->loops[i];
		loop->epfd = loop->wakefd = -1;
		server->loop_count++;
		if (loop_init(server, loop, i) < 0)
			return server_fail(server, "event loop", "cannot create", error_r);
	}
	for (unsigned i = 0; i < server->loop_count; i++) {
		int err = pthread_create(&server->loops[i].thread, NULL, loop_thread, &server->loops[i]);
		if (err != 0) {
			errno = err;
			return server_fail(server, "event loop", "cannot start thread", error_r);
		}
		server->loops[i].thread_started = true;
	}
	return 0;
}

void server_stop(struct server *server)
{
	uint64_t one = 1;

	atomic_store(&server->stopping, true);
	for (unsigned i = 0; i < server->loop_count; i++) {
		if (server->loops[i].wakefd >= 0) {
			ssize_t MF_UNUSED w = write(server->loops[i].wakefd, &one, sizeof(one));
		}
	}
}

bool server_wait(struct server *server, unsigned timeout_ms)
{
	uint64_t deadline = mf_now_ms() + timeout_ms;

	for (unsigned i = 0; i < server->loop_count; i++) {
		struct loop *loop = &server->loops[i];
		while (loop->thread_started && !atomic_load(&loop->finished)) {
			if (mf_now_ms() >= deadline)
				return false;
			usleep(10000);
		}
		if (loop->thread_started) {
			pthread_join(loop->thread, NULL);
			loop->thread_started = false;
		}
	}
	return true;
}

static void listener_free(struct listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	if (l->unlink_on_free)
		unlink(l->config.path);
	mf_free(&l->config.address);
	mf_free(&l->config.path);
}

void server_free(struct server **serverp)
{
	struct server *server = *serverp;

	if (server == NULL)
		return;
	if (server->loop_count > 0) {
		server_stop(server);
		server_wait(server, 60000);
	}
	worker_pool_free(&server->workers);
	for (unsigned i = 0; i < server->loop_count; i++) {
		struct loop *loop = &server->loops[i];
		conn_loop_done_jobs(loop);
		conn_loop_close_all(loop, true);
		conn_loop_reap(loop);
		if (loop->epfd >= 0)
			close(loop->epfd);
		if (loop->wakefd >= 0)
			close(loop->wakefd);
		pthread_mutex_destroy(&loop->lock);
	}
	free(server->loops);
	for (unsigned i = 0; i < server->listener_count; i++)
		listener_free(&server->listeners[i]);
	for (unsigned i = 0; i < IP_TABLE_SIZE; i++) {
		while (server->ip_table[i] != NULL) {
			struct ip_count *c = server->ip_table[i];
			server->ip_table[i] = c->next;
			free(c);
		}
	}
	free(server->ip_table);
	pthread_mutex_destroy(&server->ip_lock);
	free(server);
	*serverp = NULL;
}
