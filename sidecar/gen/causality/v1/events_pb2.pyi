from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Platform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLATFORM_UNSPECIFIED: _ClassVar[Platform]
    PLATFORM_IOS: _ClassVar[Platform]
    PLATFORM_ANDROID: _ClassVar[Platform]
    PLATFORM_WEB: _ClassVar[Platform]

class NetworkType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_TYPE_UNSPECIFIED: _ClassVar[NetworkType]
    NETWORK_TYPE_WIFI: _ClassVar[NetworkType]
    NETWORK_TYPE_CELLULAR_2G: _ClassVar[NetworkType]
    NETWORK_TYPE_CELLULAR_3G: _ClassVar[NetworkType]
    NETWORK_TYPE_CELLULAR_4G: _ClassVar[NetworkType]
    NETWORK_TYPE_CELLULAR_5G: _ClassVar[NetworkType]
    NETWORK_TYPE_ETHERNET: _ClassVar[NetworkType]
    NETWORK_TYPE_OFFLINE: _ClassVar[NetworkType]

class AuthMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_METHOD_UNSPECIFIED: _ClassVar[AuthMethod]
    AUTH_METHOD_EMAIL: _ClassVar[AuthMethod]
    AUTH_METHOD_PHONE: _ClassVar[AuthMethod]
    AUTH_METHOD_GOOGLE: _ClassVar[AuthMethod]
    AUTH_METHOD_APPLE: _ClassVar[AuthMethod]
    AUTH_METHOD_FACEBOOK: _ClassVar[AuthMethod]
    AUTH_METHOD_SSO: _ClassVar[AuthMethod]
    AUTH_METHOD_BIOMETRIC: _ClassVar[AuthMethod]

class LogoutReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOGOUT_REASON_UNSPECIFIED: _ClassVar[LogoutReason]
    LOGOUT_REASON_USER_INITIATED: _ClassVar[LogoutReason]
    LOGOUT_REASON_SESSION_EXPIRED: _ClassVar[LogoutReason]
    LOGOUT_REASON_FORCED: _ClassVar[LogoutReason]

class SwipeDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWIPE_DIRECTION_UNSPECIFIED: _ClassVar[SwipeDirection]
    SWIPE_DIRECTION_LEFT: _ClassVar[SwipeDirection]
    SWIPE_DIRECTION_RIGHT: _ClassVar[SwipeDirection]
    SWIPE_DIRECTION_UP: _ClassVar[SwipeDirection]
    SWIPE_DIRECTION_DOWN: _ClassVar[SwipeDirection]

class ScrollDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCROLL_DIRECTION_UNSPECIFIED: _ClassVar[ScrollDirection]
    SCROLL_DIRECTION_UP: _ClassVar[ScrollDirection]
    SCROLL_DIRECTION_DOWN: _ClassVar[ScrollDirection]
    SCROLL_DIRECTION_LEFT: _ClassVar[ScrollDirection]
    SCROLL_DIRECTION_RIGHT: _ClassVar[ScrollDirection]

class PermissionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMISSION_STATUS_UNSPECIFIED: _ClassVar[PermissionStatus]
    PERMISSION_STATUS_GRANTED: _ClassVar[PermissionStatus]
    PERMISSION_STATUS_DENIED: _ClassVar[PermissionStatus]
    PERMISSION_STATUS_DENIED_PERMANENTLY: _ClassVar[PermissionStatus]
    PERMISSION_STATUS_LIMITED: _ClassVar[PermissionStatus]

class MemoryPressure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMORY_PRESSURE_UNSPECIFIED: _ClassVar[MemoryPressure]
    MEMORY_PRESSURE_MODERATE: _ClassVar[MemoryPressure]
    MEMORY_PRESSURE_LOW: _ClassVar[MemoryPressure]
    MEMORY_PRESSURE_CRITICAL: _ClassVar[MemoryPressure]
PLATFORM_UNSPECIFIED: Platform
PLATFORM_IOS: Platform
PLATFORM_ANDROID: Platform
PLATFORM_WEB: Platform
NETWORK_TYPE_UNSPECIFIED: NetworkType
NETWORK_TYPE_WIFI: NetworkType
NETWORK_TYPE_CELLULAR_2G: NetworkType
NETWORK_TYPE_CELLULAR_3G: NetworkType
NETWORK_TYPE_CELLULAR_4G: NetworkType
NETWORK_TYPE_CELLULAR_5G: NetworkType
NETWORK_TYPE_ETHERNET: NetworkType
NETWORK_TYPE_OFFLINE: NetworkType
AUTH_METHOD_UNSPECIFIED: AuthMethod
AUTH_METHOD_EMAIL: AuthMethod
AUTH_METHOD_PHONE: AuthMethod
AUTH_METHOD_GOOGLE: AuthMethod
AUTH_METHOD_APPLE: AuthMethod
AUTH_METHOD_FACEBOOK: AuthMethod
AUTH_METHOD_SSO: AuthMethod
AUTH_METHOD_BIOMETRIC: AuthMethod
LOGOUT_REASON_UNSPECIFIED: LogoutReason
LOGOUT_REASON_USER_INITIATED: LogoutReason
LOGOUT_REASON_SESSION_EXPIRED: LogoutReason
LOGOUT_REASON_FORCED: LogoutReason
SWIPE_DIRECTION_UNSPECIFIED: SwipeDirection
SWIPE_DIRECTION_LEFT: SwipeDirection
SWIPE_DIRECTION_RIGHT: SwipeDirection
SWIPE_DIRECTION_UP: SwipeDirection
SWIPE_DIRECTION_DOWN: SwipeDirection
SCROLL_DIRECTION_UNSPECIFIED: ScrollDirection
SCROLL_DIRECTION_UP: ScrollDirection
SCROLL_DIRECTION_DOWN: ScrollDirection
SCROLL_DIRECTION_LEFT: ScrollDirection
SCROLL_DIRECTION_RIGHT: ScrollDirection
PERMISSION_STATUS_UNSPECIFIED: PermissionStatus
PERMISSION_STATUS_GRANTED: PermissionStatus
PERMISSION_STATUS_DENIED: PermissionStatus
PERMISSION_STATUS_DENIED_PERMANENTLY: PermissionStatus
PERMISSION_STATUS_LIMITED: PermissionStatus
MEMORY_PRESSURE_UNSPECIFIED: MemoryPressure
MEMORY_PRESSURE_MODERATE: MemoryPressure
MEMORY_PRESSURE_LOW: MemoryPressure
MEMORY_PRESSURE_CRITICAL: MemoryPressure

class EventEnvelope(_message.Message):
    __slots__ = ("id", "app_id", "device_id", "timestamp_ms", "correlation_id", "device_context", "idempotency_key", "user_login", "user_logout", "user_signup", "user_profile_update", "screen_view", "screen_exit", "button_tap", "swipe_gesture", "scroll_event", "text_input", "long_press", "double_tap", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "checkout_step", "purchase_complete", "purchase_failed", "app_start", "app_background", "app_foreground", "app_crash", "network_change", "permission_request", "permission_result", "memory_warning", "battery_change", "custom_event")
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_LOGIN_FIELD_NUMBER: _ClassVar[int]
    USER_LOGOUT_FIELD_NUMBER: _ClassVar[int]
    USER_SIGNUP_FIELD_NUMBER: _ClassVar[int]
    USER_PROFILE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    SCREEN_VIEW_FIELD_NUMBER: _ClassVar[int]
    SCREEN_EXIT_FIELD_NUMBER: _ClassVar[int]
    BUTTON_TAP_FIELD_NUMBER: _ClassVar[int]
    SWIPE_GESTURE_FIELD_NUMBER: _ClassVar[int]
    SCROLL_EVENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_INPUT_FIELD_NUMBER: _ClassVar[int]
    LONG_PRESS_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_TAP_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_VIEW_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_CART_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FROM_CART_FIELD_NUMBER: _ClassVar[int]
    CHECKOUT_START_FIELD_NUMBER: _ClassVar[int]
    CHECKOUT_STEP_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_FAILED_FIELD_NUMBER: _ClassVar[int]
    APP_START_FIELD_NUMBER: _ClassVar[int]
    APP_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    APP_FOREGROUND_FIELD_NUMBER: _ClassVar[int]
    APP_CRASH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_CHANGE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_RESULT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WARNING_FIELD_NUMBER: _ClassVar[int]
    BATTERY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_EVENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    app_id: str
    device_id: str
    timestamp_ms: int
    correlation_id: str
    device_context: DeviceContext
    idempotency_key: str
    user_login: UserLogin
    user_logout: UserLogout
    user_signup: UserSignup
    user_profile_update: UserProfileUpdate
    screen_view: ScreenView
    screen_exit: ScreenExit
    button_tap: ButtonTap
    swipe_gesture: SwipeGesture
    scroll_event: ScrollEvent
    text_input: TextInput
    long_press: LongPress
    double_tap: DoubleTap
    product_view: ProductView
    add_to_cart: AddToCart
    remove_from_cart: RemoveFromCart
    checkout_start: CheckoutStart
    checkout_step: CheckoutStep
    purchase_complete: PurchaseComplete
    purchase_failed: PurchaseFailed
    app_start: AppStart
    app_background: AppBackground
    app_foreground: AppForeground
    app_crash: AppCrash
    network_change: NetworkChange
    permission_request: PermissionRequest
    permission_result: PermissionResult
    memory_warning: MemoryWarning
    battery_change: BatteryChange
    custom_event: CustomEvent
    def __init__(self, id: _Optional[str] = ..., app_id: _Optional[str] = ..., device_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., correlation_id: _Optional[str] = ..., device_context: _Optional[_Union[DeviceContext, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., user_login: _Optional[_Union[UserLogin, _Mapping]] = ..., user_logout: _Optional[_Union[UserLogout, _Mapping]] = ..., user_signup: _Optional[_Union[UserSignup, _Mapping]] = ..., user_profile_update: _Optional[_Union[UserProfileUpdate, _Mapping]] = ..., screen_view: _Optional[_Union[ScreenView, _Mapping]] = ..., screen_exit: _Optional[_Union[ScreenExit, _Mapping]] = ..., button_tap: _Optional[_Union[ButtonTap, _Mapping]] = ..., swipe_gesture: _Optional[_Union[SwipeGesture, _Mapping]] = ..., scroll_event: _Optional[_Union[ScrollEvent, _Mapping]] = ..., text_input: _Optional[_Union[TextInput, _Mapping]] = ..., long_press: _Optional[_Union[LongPress, _Mapping]] = ..., double_tap: _Optional[_Union[DoubleTap, _Mapping]] = ..., product_view: _Optional[_Union[ProductView, _Mapping]] = ..., add_to_cart: _Optional[_Union[AddToCart, _Mapping]] = ..., remove_from_cart: _Optional[_Union[RemoveFromCart, _Mapping]] = ..., checkout_start: _Optional[_Union[CheckoutStart, _Mapping]] = ..., checkout_step: _Optional[_Union[CheckoutStep, _Mapping]] = ..., purchase_complete: _Optional[_Union[PurchaseComplete, _Mapping]] = ..., purchase_failed: _Optional[_Union[PurchaseFailed, _Mapping]] = ..., app_start: _Optional[_Union[AppStart, _Mapping]] = ..., app_background: _Optional[_Union[AppBackground, _Mapping]] = ..., app_foreground: _Optional[_Union[AppForeground, _Mapping]] = ..., app_crash: _Optional[_Union[AppCrash, _Mapping]] = ..., network_change: _Optional[_Union[NetworkChange, _Mapping]] = ..., permission_request: _Optional[_Union[PermissionRequest, _Mapping]] = ..., permission_result: _Optional[_Union[PermissionResult, _Mapping]] = ..., memory_warning: _Optional[_Union[MemoryWarning, _Mapping]] = ..., battery_change: _Optional[_Union[BatteryChange, _Mapping]] = ..., custom_event: _Optional[_Union[CustomEvent, _Mapping]] = ...) -> None: ...

class DeviceContext(_message.Message):
    __slots__ = ("platform", "os_version", "app_version", "build_number", "device_model", "manufacturer", "screen_width", "screen_height", "locale", "timezone", "network_type", "carrier", "is_jailbroken", "is_emulator", "sdk_version")
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    SCREEN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SCREEN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_TYPE_FIELD_NUMBER: _ClassVar[int]
    CARRIER_FIELD_NUMBER: _ClassVar[int]
    IS_JAILBROKEN_FIELD_NUMBER: _ClassVar[int]
    IS_EMULATOR_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    platform: Platform
    os_version: str
    app_version: str
    build_number: str
    device_model: str
    manufacturer: str
    screen_width: int
    screen_height: int
    locale: str
    timezone: str
    network_type: NetworkType
    carrier: str
    is_jailbroken: bool
    is_emulator: bool
    sdk_version: str
    def __init__(self, platform: _Optional[_Union[Platform, str]] = ..., os_version: _Optional[str] = ..., app_version: _Optional[str] = ..., build_number: _Optional[str] = ..., device_model: _Optional[str] = ..., manufacturer: _Optional[str] = ..., screen_width: _Optional[int] = ..., screen_height: _Optional[int] = ..., locale: _Optional[str] = ..., timezone: _Optional[str] = ..., network_type: _Optional[_Union[NetworkType, str]] = ..., carrier: _Optional[str] = ..., is_jailbroken: _Optional[bool] = ..., is_emulator: _Optional[bool] = ..., sdk_version: _Optional[str] = ...) -> None: ...

class UserLogin(_message.Message):
    __slots__ = ("user_id", "method", "success", "failure_reason")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    method: AuthMethod
    success: bool
    failure_reason: str
    def __init__(self, user_id: _Optional[str] = ..., method: _Optional[_Union[AuthMethod, str]] = ..., success: _Optional[bool] = ..., failure_reason: _Optional[str] = ...) -> None: ...

class UserLogout(_message.Message):
    __slots__ = ("user_id", "reason", "session_duration_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    reason: LogoutReason
    session_duration_ms: int
    def __init__(self, user_id: _Optional[str] = ..., reason: _Optional[_Union[LogoutReason, str]] = ..., session_duration_ms: _Optional[int] = ...) -> None: ...

class UserSignup(_message.Message):
    __slots__ = ("user_id", "method", "referral_code", "marketing_opt_in")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_CODE_FIELD_NUMBER: _ClassVar[int]
    MARKETING_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    method: AuthMethod
    referral_code: str
    marketing_opt_in: bool
    def __init__(self, user_id: _Optional[str] = ..., method: _Optional[_Union[AuthMethod, str]] = ..., referral_code: _Optional[str] = ..., marketing_opt_in: _Optional[bool] = ...) -> None: ...

class UserProfileUpdate(_message.Message):
    __slots__ = ("user_id", "updated_fields")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    updated_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., updated_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ScreenView(_message.Message):
    __slots__ = ("screen_name", "screen_class", "previous_screen", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    SCREEN_CLASS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SCREEN_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    screen_name: str
    screen_class: str
    previous_screen: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, screen_name: _Optional[str] = ..., screen_class: _Optional[str] = ..., previous_screen: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScreenExit(_message.Message):
    __slots__ = ("screen_name", "duration_ms", "next_screen")
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SCREEN_FIELD_NUMBER: _ClassVar[int]
    screen_name: str
    duration_ms: int
    next_screen: str
    def __init__(self, screen_name: _Optional[str] = ..., duration_ms: _Optional[int] = ..., next_screen: _Optional[str] = ...) -> None: ...

class ButtonTap(_message.Message):
    __slots__ = ("button_id", "button_text", "screen_name", "x", "y")
    BUTTON_ID_FIELD_NUMBER: _ClassVar[int]
    BUTTON_TEXT_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    button_id: str
    button_text: str
    screen_name: str
    x: float
    y: float
    def __init__(self, button_id: _Optional[str] = ..., button_text: _Optional[str] = ..., screen_name: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class SwipeGesture(_message.Message):
    __slots__ = ("element_id", "screen_name", "direction", "velocity")
    ELEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VELOCITY_FIELD_NUMBER: _ClassVar[int]
    element_id: str
    screen_name: str
    direction: SwipeDirection
    velocity: float
    def __init__(self, element_id: _Optional[str] = ..., screen_name: _Optional[str] = ..., direction: _Optional[_Union[SwipeDirection, str]] = ..., velocity: _Optional[float] = ...) -> None: ...

class ScrollEvent(_message.Message):
    __slots__ = ("element_id", "screen_name", "direction", "depth_percent")
    ELEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    element_id: str
    screen_name: str
    direction: ScrollDirection
    depth_percent: float
    def __init__(self, element_id: _Optional[str] = ..., screen_name: _Optional[str] = ..., direction: _Optional[_Union[ScrollDirection, str]] = ..., depth_percent: _Optional[float] = ...) -> None: ...

class TextInput(_message.Message):
    __slots__ = ("field_id", "screen_name", "character_count", "submitted")
    FIELD_ID_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    field_id: str
    screen_name: str
    character_count: int
    submitted: bool
    def __init__(self, field_id: _Optional[str] = ..., screen_name: _Optional[str] = ..., character_count: _Optional[int] = ..., submitted: _Optional[bool] = ...) -> None: ...

class LongPress(_message.Message):
    __slots__ = ("element_id", "screen_name", "duration_ms", "x", "y")
    ELEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    element_id: str
    screen_name: str
    duration_ms: int
    x: float
    y: float
    def __init__(self, element_id: _Optional[str] = ..., screen_name: _Optional[str] = ..., duration_ms: _Optional[int] = ..., x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class DoubleTap(_message.Message):
    __slots__ = ("element_id", "screen_name", "x", "y")
    ELEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCREEN_NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    element_id: str
    screen_name: str
    x: float
    y: float
    def __init__(self, element_id: _Optional[str] = ..., screen_name: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class ProductView(_message.Message):
    __slots__ = ("product_id", "product_name", "category", "price_cents", "currency", "source")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    product_name: str
    category: str
    price_cents: int
    currency: str
    source: str
    def __init__(self, product_id: _Optional[str] = ..., product_name: _Optional[str] = ..., category: _Optional[str] = ..., price_cents: _Optional[int] = ..., currency: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class AddToCart(_message.Message):
    __slots__ = ("product_id", "cart_id", "quantity", "price_cents", "currency")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    cart_id: str
    quantity: int
    price_cents: int
    currency: str
    def __init__(self, product_id: _Optional[str] = ..., cart_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price_cents: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class RemoveFromCart(_message.Message):
    __slots__ = ("product_id", "cart_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    cart_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., cart_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class CheckoutStart(_message.Message):
    __slots__ = ("cart_id", "item_count", "total_cents", "currency")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    item_count: int
    total_cents: int
    currency: str
    def __init__(self, cart_id: _Optional[str] = ..., item_count: _Optional[int] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class CheckoutStep(_message.Message):
    __slots__ = ("cart_id", "step", "step_name", "option")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    OPTION_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    step: int
    step_name: str
    option: str
    def __init__(self, cart_id: _Optional[str] = ..., step: _Optional[int] = ..., step_name: _Optional[str] = ..., option: _Optional[str] = ...) -> None: ...

class PurchaseItem(_message.Message):
    __slots__ = ("product_id", "product_name", "quantity", "price_cents")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    product_name: str
    quantity: int
    price_cents: int
    def __init__(self, product_id: _Optional[str] = ..., product_name: _Optional[str] = ..., quantity: _Optional[int] = ..., price_cents: _Optional[int] = ...) -> None: ...

class PurchaseComplete(_message.Message):
    __slots__ = ("order_id", "cart_id", "item_count", "total_cents", "currency", "payment_method", "items")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    cart_id: str
    item_count: int
    total_cents: int
    currency: str
    payment_method: str
    items: _containers.RepeatedCompositeFieldContainer[PurchaseItem]
    def __init__(self, order_id: _Optional[str] = ..., cart_id: _Optional[str] = ..., item_count: _Optional[int] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ..., payment_method: _Optional[str] = ..., items: _Optional[_Iterable[_Union[PurchaseItem, _Mapping]]] = ...) -> None: ...

class PurchaseFailed(_message.Message):
    __slots__ = ("cart_id", "total_cents", "currency", "payment_method", "error_code", "error_message")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    total_cents: int
    currency: str
    payment_method: str
    error_code: str
    error_message: str
    def __init__(self, cart_id: _Optional[str] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ..., payment_method: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class AppStart(_message.Message):
    __slots__ = ("cold_start", "launch_duration_ms", "launch_source")
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_SOURCE_FIELD_NUMBER: _ClassVar[int]
    cold_start: bool
    launch_duration_ms: int
    launch_source: str
    def __init__(self, cold_start: _Optional[bool] = ..., launch_duration_ms: _Optional[int] = ..., launch_source: _Optional[str] = ...) -> None: ...

class AppBackground(_message.Message):
    __slots__ = ("session_duration_ms",)
    SESSION_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    session_duration_ms: int
    def __init__(self, session_duration_ms: _Optional[int] = ...) -> None: ...

class AppForeground(_message.Message):
    __slots__ = ("background_duration_ms",)
    BACKGROUND_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    background_duration_ms: int
    def __init__(self, background_duration_ms: _Optional[int] = ...) -> None: ...

class AppCrash(_message.Message):
    __slots__ = ("exception_type", "message", "stack_trace", "fatal")
    EXCEPTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    exception_type: str
    message: str
    stack_trace: str
    fatal: bool
    def __init__(self, exception_type: _Optional[str] = ..., message: _Optional[str] = ..., stack_trace: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class NetworkChange(_message.Message):
    __slots__ = ("previous_type", "current_type", "connected")
    PREVIOUS_TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    previous_type: NetworkType
    current_type: NetworkType
    connected: bool
    def __init__(self, previous_type: _Optional[_Union[NetworkType, str]] = ..., current_type: _Optional[_Union[NetworkType, str]] = ..., connected: _Optional[bool] = ...) -> None: ...

class PermissionRequest(_message.Message):
    __slots__ = ("permission", "rationale_shown")
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_SHOWN_FIELD_NUMBER: _ClassVar[int]
    permission: str
    rationale_shown: bool
    def __init__(self, permission: _Optional[str] = ..., rationale_shown: _Optional[bool] = ...) -> None: ...

class PermissionResult(_message.Message):
    __slots__ = ("permission", "status")
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    permission: str
    status: PermissionStatus
    def __init__(self, permission: _Optional[str] = ..., status: _Optional[_Union[PermissionStatus, str]] = ...) -> None: ...

class MemoryWarning(_message.Message):
    __slots__ = ("pressure", "available_bytes", "used_bytes")
    PRESSURE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    pressure: MemoryPressure
    available_bytes: int
    used_bytes: int
    def __init__(self, pressure: _Optional[_Union[MemoryPressure, str]] = ..., available_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class BatteryChange(_message.Message):
    __slots__ = ("level_percent", "charging", "low_power_mode")
    LEVEL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CHARGING_FIELD_NUMBER: _ClassVar[int]
    LOW_POWER_MODE_FIELD_NUMBER: _ClassVar[int]
    level_percent: float
    charging: bool
    low_power_mode: bool
    def __init__(self, level_percent: _Optional[float] = ..., charging: _Optional[bool] = ..., low_power_mode: _Optional[bool] = ...) -> None: ...

class CustomEvent(_message.Message):
    __slots__ = ("event_name", "string_params", "int_params", "float_params", "bool_params")
    class StringParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class IntParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FloatParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class BoolParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    STRING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    INT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FLOAT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    BOOL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    event_name: str
    string_params: _containers.ScalarMap[str, str]
    int_params: _containers.ScalarMap[str, int]
    float_params: _containers.ScalarMap[str, float]
    bool_params: _containers.ScalarMap[str, bool]
    def __init__(self, event_name: _Optional[str] = ..., string_params: _Optional[_Mapping[str, str]] = ..., int_params: _Optional[_Mapping[str, int]] = ..., float_params: _Optional[_Mapping[str, float]] = ..., bool_params: _Optional[_Mapping[str, bool]] = ...) -> None: ...
