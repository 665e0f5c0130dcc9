/* lmtp.h: the LMTP protocol module (RFC 2033). The frontend registers
 * lmtp_handler for every listener with protocol "lmtp". */
#ifndef MF_LMTP_H
#define MF_LMTP_H

#include "frontend/conn.h"

extern const struct proto_handler lmtp_handler;

#endif
