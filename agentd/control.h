/*
 * control: the control socket that agentctl talks to (proto/CONTROL.md).
 */
#ifndef AGENTD_CONTROL_H
#define AGENTD_CONTROL_H

#include "agentd.h"

/* Bind [control] socket (none when empty). 0 or -errno. */
int control_init(struct agentd *d);
/* End every tail subscription (shutdown). */
void control_stop_tail(struct agentd *d);
void control_close(struct agentd *d);

#endif
