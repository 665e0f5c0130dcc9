/* imap.h: the IMAP protocol module (RFC 3501 IMAP4rev1 with IDLE, UIDPLUS,
 * MOVE, NAMESPACE, ID, ENABLE, UNSELECT, LITERAL+, SASL-IR, SPECIAL-USE,
 * LIST-EXTENDED, CHILDREN, STATUS=SIZE, APPENDLIMIT) that the frontend
 * registers for imap and imaps listeners. */
#ifndef MF_IMAP_H
#define MF_IMAP_H

#include "frontend/conn.h"

extern const struct proto_handler imap_handler;

#endif
