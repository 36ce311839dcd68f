/* control: placeholder until the control socket lands. */
#include "control.h"

int control_init(struct agentd *d)
{
	(void)d;
	return 0;
}

void control_stop_tail(struct agentd *d)
{
	(void)d;
}

void control_close(struct agentd *d)
{
	(void)d;
}
