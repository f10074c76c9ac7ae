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
  ALL_SERVICES,
  type ConfigKey,
  type ConfigValue,
  formatHostPort,
  type HostPort,
  type KeyType,
  LISTENER_DEFAULTS,
  METRICS_PORT_DEFAULTS,
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
  topicLogConfig,
} from "./services.js";
