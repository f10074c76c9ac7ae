/**
 * Configuration of every Samsa service: defaults → properties/YAML file → `SAMSA_*` environment
 * → command-line flags, validated once into a frozen typed object. See docs/configuration.md.
 */
export { type PropertyLine, parseProperties } from "./config-file.js";
export {
  DEFAULT_LISTENER_NAME,
  type Listener,
  type ListenerEntry,
  parseListenerList,
  type ResolvedListeners,
  resolveListeners,
} from "./listeners.js";
export {
  CONFIG_FILE_ENV,
  camelCase,
  configError,
  ENV_PREFIX,
  envVarName,
  type LoadedConfig,
  type LoadOptions,
  loadConfig,
} from "./loader.js";
export {
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  UNLIMITED,
  validateLogConfig,
} from "./log-config.js";
export {
  ALL_SERVICES,
  type ConfigKey,
  type ConfigValue,
  formatHostPort,
  type HostPort,
  type KeyType,
  LISTENER_DEFAULTS,
  METRICS_PORT_DEFAULTS,
  NOT_BUILT_KEYS,
  parseHostPort,
  SAMSA_SCHEMA,
  type ServiceName,
} from "./schema.js";
export {
  type BrokerConfig,
  brokerLogConfig,
  type CommonConfig,
  type ControllerConfig,
  type Env,
  type GatewayConfig,
  loadBrokerConfig,
  loadControllerConfig,
  loadGatewayConfig,
  type TopicDefaults,
} from "./services.js";
export {
  EMPTY_TOPIC_CONFIG,
  MIN_INSYNC_REPLICAS_MAX,
  parseTopicConfig,
  REPLICATION_FACTOR_MAX,
  TOPIC_CONFIG_KEYS,
  TOPIC_PARTITIONS_MAX,
  type TopicConfig,
  topicConfigOf,
  topicLogConfig,
} from "./topic-config.js";
