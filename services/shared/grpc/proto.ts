/**
 * The one place the protos are loaded: every `.proto` under `proto/`, once, with the
 * explicit options below. `scripts/gen-proto.sh` generates the TypeScript types in
 * `services/shared/generated/` with the same options, so the types describe exactly the objects
 * this loader produces. Services and clients take their {@link ServiceSpec} from here; server
 * reflection takes {@link packageDefinition}.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
// protobufjs is @grpc/proto-loader's own protobuf library: the one that built the descriptors.
import descriptor from "protobufjs/ext/descriptor/index.js";
import type { ProtoGrpcType as AdminProto } from "../generated/admin.js";
import type { ProtoGrpcType as BrokerProto } from "../generated/broker.js";
import type { ProtoGrpcType as GatewayProto } from "../generated/gateway.js";
import type { ProtoGrpcType as GroupsProto } from "../generated/groups.js";
import type { ProtoGrpcType as LifecycleProto } from "../generated/lifecycle.js";
import type { ProtoGrpcType as ReplicationProto } from "../generated/replication.js";
import type {
  BrokerLifecycleServiceClient,
  BrokerLifecycleServiceHandlers,
} from "../generated/samsa/internal/v1/BrokerLifecycleService.js";
import type {
  ReplicationServiceClient,
  ReplicationServiceHandlers,
} from "../generated/samsa/internal/v1/ReplicationService.js";
import type {
  AdminServiceClient,
  AdminServiceHandlers,
} from "../generated/samsa/v1/AdminService.js";
import type {
  BrokerServiceClient,
  BrokerServiceHandlers,
} from "../generated/samsa/v1/BrokerService.js";
import type {
  GatewayServiceClient,
  GatewayServiceHandlers,
} from "../generated/samsa/v1/GatewayService.js";
import type {
  GroupServiceClient,
  GroupServiceHandlers,
} from "../generated/samsa/v1/GroupService.js";

/**
 * Loader options; `scripts/gen-proto.sh` passes the same ones to `proto-loader-gen-types`.
 * `enums` is left out on purpose: enums are then plain numbers, identical to the TS `ErrorCode`
 * values (proto-loader's only alternative is `String`).
 */
export const PROTO_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: false,
  longs: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  json: false,
});

/** How many parent directories are searched for the `proto/` root (it is 3 up in the source). */
const PROTO_ROOT_SEARCH_DEPTH_MAX = 6;
/** How deep `proto/` is walked for `.proto` files (`proto/samsa/internal/v1/x.proto` is 3). */
const PROTO_TREE_DEPTH_MAX = 8;

/** Finds `proto/` (the directory holding `buf.yaml`) above this module, in source or in dist. */
function findProtoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < PROTO_ROOT_SEARCH_DEPTH_MAX; i++) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, "buf.yaml"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error("proto/ (with buf.yaml) not found above services/shared/grpc");
}

/** Every `.proto` file under `root`, relative to it, in a stable order. */
function listProtoFiles(root: string): string[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > PROTO_TREE_DEPTH_MAX) throw new Error(`proto/ deeper than ${PROTO_TREE_DEPTH_MAX}`);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, depth + 1);
      else if (entry.isFile() && entry.name.endsWith(".proto")) files.push(relative(root, path));
    }
  };
  walk(root, 0);
  return files.sort();
}

/** The `proto/` directory, the import root of every proto file. */
export const protoRoot: string = findProtoRoot();

/** Every loaded proto file, relative to {@link protoRoot} (e.g. `samsa/v1/broker.proto`). */
export const protoFiles: readonly string[] = Object.freeze(listProtoFiles(protoRoot));

/** A message of `google/protobuf/descriptor.proto` as protobufjs decodes it (what is used here). */
interface DescriptorMessage {
  name?: string;
  package?: string;
  field?: { typeName?: string }[];
  nestedType?: DescriptorMessage[];
  messageType?: DescriptorMessage[];
  options?: { mapEntry?: boolean } | null;
}

/**
 * protobufjs (7.x), which builds the file descriptors that server reflection serves, names a map
 * field's entry type after the field (`Configs`) instead of `ConfigsEntry`, and refers to it by
 * that relative name. protoc and Go's protodesc (grpcurl, `buf curl --reflect`) reject such a
 * file, so reflection served a schema no client could use. This renames every map entry to
 * `<Field>Entry` and refers to it by its fully-qualified name. Returns the encoded file.
 */
function fixMapEntries(encoded: Buffer): Buffer {
  const file = descriptor.FileDescriptorProto.decode(encoded) as unknown as DescriptorMessage;
  let changed = false;
  const visit = (messages: DescriptorMessage[] | undefined, scope: string): void => {
    for (const message of messages ?? []) {
      const name = `${scope}.${message.name}`;
      for (const nested of message.nestedType ?? []) {
        if (!nested.options?.mapEntry || nested.name?.endsWith("Entry")) continue;
        const old = nested.name;
        nested.name = `${old}Entry`;
        for (const field of message.field ?? [])
          if (field.typeName === old) field.typeName = `${name}.${nested.name}`;
        changed = true;
      }
      visit(message.nestedType, name);
    }
  };
  visit(file.messageType, file.package ? `.${file.package}` : "");
  if (!changed) return encoded;
  const message = file as unknown as Parameters<typeof descriptor.FileDescriptorProto.encode>[0];
  return Buffer.from(descriptor.FileDescriptorProto.encode(message).finish());
}

/** Applies {@link fixMapEntries} to every file descriptor of a package definition, in place. */
function fixReflectionDescriptors(definition: protoLoader.PackageDefinition): void {
  const fixed = new Map<string, Buffer>();
  for (const entry of Object.values(definition)) {
    const files = (entry as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
    if (!Array.isArray(files)) continue;
    for (const [i, file] of files.entries()) {
      const key = (file as Buffer).toString("base64");
      let out = fixed.get(key);
      if (out === undefined) {
        out = fixMapEntries(file as Buffer);
        fixed.set(key, out);
      }
      files[i] = out;
    }
  }
}

/** The loaded package definition of all protos; server reflection serves this. */
export const packageDefinition: protoLoader.PackageDefinition = protoLoader.loadSync(
  [...protoFiles],
  { ...PROTO_LOADER_OPTIONS, includeDirs: [protoRoot] },
);
fixReflectionDescriptors(packageDefinition);

/** The loaded gRPC object, typed by the generated `ProtoGrpcType`s of the service protos. */
export type SamsaProto = AdminProto &
  BrokerProto &
  GatewayProto &
  GroupsProto &
  LifecycleProto &
  ReplicationProto;

/** The gRPC object tree (`samsa.v1.BrokerService`, ...) built from {@link packageDefinition}. */
export const samsaProto = grpc.loadPackageDefinition(packageDefinition) as unknown as SamsaProto;

/** A generated client class: `new Ctor(address, credentials, options)`. */
export type ServiceClientConstructor<C extends grpc.Client> = (new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => C) & { service: grpc.ServiceDefinition };

/**
 * Everything about one service: its fully-qualified name (for health, reflection and metrics),
 * its definition (for the server) and its client class. `H` is the generated `...Handlers`
 * interface; it only carries types, so the server can type the handlers it is given.
 */
export interface ServiceSpec<H extends grpc.UntypedServiceImplementation, C extends grpc.Client> {
  /** Fully-qualified service name, e.g. `samsa.v1.BrokerService`. */
  readonly name: string;
  /** The service definition `grpc.Server.addService` takes. */
  readonly definition: grpc.ServiceDefinition;
  /** The generated client class. */
  readonly Client: ServiceClientConstructor<C>;
  /** Type-only marker of the handler interface; always undefined at run time. */
  readonly handlersType?: H;
}

/**
 * Looks a service up in {@link samsaProto} by its fully-qualified name. New services (gateway,
 * internal replication) add one line below with their generated `Handlers` and `Client` types.
 */
export function defineService<H extends grpc.UntypedServiceImplementation, C extends grpc.Client>(
  name: string,
): ServiceSpec<H, C> {
  let node: unknown = samsaProto;
  for (const part of name.split(".")) {
    node = (node as Record<string, unknown> | undefined)?.[part];
  }
  const ctor = node as ServiceClientConstructor<C> | undefined;
  if (typeof ctor !== "function" || typeof ctor.service !== "object") {
    throw new Error(`gRPC service ${name} is not defined in proto/`);
  }
  return Object.freeze({ name, definition: ctor.service, Client: ctor });
}

/** `samsa.v1.BrokerService`: produce, fetch, subscribe, list offsets, metadata. */
export const brokerService: ServiceSpec<BrokerServiceHandlers, BrokerServiceClient> =
  defineService("samsa.v1.BrokerService");

/** `samsa.v1.AdminService`: the controller's topic and cluster administration. */
export const adminService: ServiceSpec<AdminServiceHandlers, AdminServiceClient> =
  defineService("samsa.v1.AdminService");

/** `samsa.v1.GatewayService`: the broker's client calls routed to leaders, Publish, Consume. */
export const gatewayService: ServiceSpec<GatewayServiceHandlers, GatewayServiceClient> =
  defineService("samsa.v1.GatewayService");

/** `samsa.v1.GroupService`: the consumer group coordinator, served by every gateway. */
export const groupService: ServiceSpec<GroupServiceHandlers, GroupServiceClient> =
  defineService("samsa.v1.GroupService");

/** `samsa.internal.v1.ReplicationService`: followers' ReplicaFetch (brokers only). */
export const replicationService: ServiceSpec<ReplicationServiceHandlers, ReplicationServiceClient> =
  defineService("samsa.internal.v1.ReplicationService");

/** `samsa.internal.v1.BrokerLifecycleService`: brokers' controlled shutdown (controllers). */
export const brokerLifecycleService: ServiceSpec<
  BrokerLifecycleServiceHandlers,
  BrokerLifecycleServiceClient
> = defineService("samsa.internal.v1.BrokerLifecycleService");

export type {
  BrokerLifecycleServiceClient,
  BrokerLifecycleServiceHandlers,
  ReplicationServiceClient,
  ReplicationServiceHandlers,
  AdminServiceClient,
  AdminServiceHandlers,
  BrokerServiceClient,
  BrokerServiceHandlers,
  GatewayServiceClient,
  GatewayServiceHandlers,
  GroupServiceClient,
  GroupServiceHandlers,
};
