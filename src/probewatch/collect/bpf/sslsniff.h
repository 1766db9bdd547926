/* SPDX-License-Identifier: MIT */
/*
 * sslsniff.h: the record of sslsniff.bpf.c (TLS plaintext at the library's API:
 * OpenSSL SSL_read/SSL_write(_ex), GnuTLS gnutls_record_recv/send, Go crypto/tls
 * (*Conn).Read/Write). Mirrored in collect/bpf/ssl.py with struct.Struct.
 *
 * One call gives one record, or several when its data is longer than one chunk:
 * every chunk repeats the call's header (same start_ns and tid) with its offset.
 * len is what the call moved; captured what was copied (min(len, data_max)):
 * len - captured bytes were cut and are counted, never shown as if whole.
 */
#ifndef PW_SSLSNIFF_H
#define PW_SSLSNIFF_H

#define PW_EV_SSL 32          /* hdr.kind (outside enum pw_kind: its own object) */
#define PW_SSL_CHUNK 8192     /* data bytes per ring record at most (power of 2) */
#define PW_SSL_MAX_CHUNKS 512 /* chunks per call: data_max is at most 4 MiB */

/* the attachment's cookie: lib_index << 8 | function */
#define PW_SSL_F_WRITE 1     /* SSL_write(ssl, buf, num) -> int */
#define PW_SSL_F_READ 2      /* SSL_read(ssl, buf, num) -> int */
#define PW_SSL_F_WRITE_EX 3  /* SSL_write_ex(ssl, buf, num, size_t *written) -> 1/0 */
#define PW_SSL_F_READ_EX 4   /* SSL_read_ex(ssl, buf, num, size_t *readbytes) -> 1/0 */
#define PW_SSL_F_GNUTLS_SEND 5 /* gnutls_record_send(session, data, size) -> ssize_t */
#define PW_SSL_F_GNUTLS_RECV 6 /* gnutls_record_recv(session, data, size) -> ssize_t */
#define PW_SSL_F_GO_WRITE 7  /* crypto/tls.(*Conn).Write(c, b []byte) (n int, err error) */
#define PW_SSL_F_GO_READ 8   /* crypto/tls.(*Conn).Read(c, b []byte) (n int, err error) */

/* pw_ssl.flags (PW_BLOB_FAULT 2 as in probewatch.h) */
#define PW_SSL_CUT 1       /* captured < len: the rest was not copied */
#define PW_SSL_FAULT 2     /* reading the buffer failed: this chunk has no data */
#define PW_SSL_SOCK 4      /* conn holds the socket's fd and addresses */
#define PW_SSL_LAST 8      /* the last chunk of the call */

/* stats slots beyond probewatch.h's enum pw_stat */
#define PW_STAT_SSL_BYTES 4   /* plaintext bytes copied */
#define PW_STAT_SSL_CUT 5     /* plaintext bytes not copied (beyond data_max) */

struct pw_ssl_conn {
	__s32 fd;      /* -1: not seen */
	__u16 family;  /* AF_INET 2, AF_INET6 10, AF_UNIX 1; 0: not a socket / unknown */
	__u16 sport;   /* host order */
	__u16 dport;   /* host order */
	__u16 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
}; /* 44 bytes */

struct pw_ssl {
	struct pw_hdr h;  /* ts: the call's return */
	__u64 start_ns;   /* the call's entry */
	__u64 obj;        /* the SSL*, gnutls_session_t or *tls.Conn */
	__u32 cookie;
	__u32 flags;      /* PW_SSL_* */
	__u32 len;        /* plaintext bytes the call moved */
	__u32 captured;   /* bytes copied over all chunks of the call */
	__u32 offset;     /* where this chunk's data starts in the call's buffer */
	__u32 chunk_len;  /* data bytes after this header */
	struct pw_ssl_conn c;
	__u32 _pad;
}; /* 152 bytes, then chunk_len bytes */

#endif /* PW_SSLSNIFF_H */
