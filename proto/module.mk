# proto/: the record codec, compiled into libagent and agentd alike.
PROTO_OBJ := $(BUILD)/proto/agent_proto.o
